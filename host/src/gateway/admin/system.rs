//! Plugins and their grants, the model catalogue, provider health and
//! circuit state, the playground, and the OpenAPI document.

use super::auth::Admin;
use super::{AdminError, AdminResult, ErrorBody};
use crate::gateway::chat::{chat_as, until_cut};
use crate::gateway::server::{Caller, Protocol, Shared};
use crate::host::Target;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use utoipa::{IntoParams, ToSchema};

/// Loaded plugins (`plugins`) with the hosts and environment variables
/// they were granted, and plugin files that failed to load (`errors`).
#[utoipa::path(get, path = "/admin/v1/plugins", tag = "system",
    responses((status = 200, body = Object, description = "`{plugins: [...], errors: [...]}`")))]
pub(super) async fn plugins(_: Admin, State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(crate::views::plugins_json(shared.host()))
}

/// One plugin: what it is, its grants, its models.
#[utoipa::path(get, path = "/admin/v1/plugins/{id}", tag = "system",
    params(("id" = String, Path, description = "The provider id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(super) async fn plugin(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let host = shared.host();
    let summary = host
        .plugins()
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| AdminError::not_found("plugin", &id))?;
    let mut view = crate::views::plugin_json(&summary);
    if let Some(info) = host.provider_info(&id) {
        view["default_base_url"] = json!(info.default_base_url);
        view["api_key_env"] = json!(info.api_key_env);
        view["base_url_env"] = json!(info.base_url_env);
        view["asked_hosts"] = json!(info.hosts);
    }
    view["catalogue"] = json!(crate::views::models_json(host, Some(&id)));
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ModelsQuery {
    /// Only this provider's models.
    provider: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Catalogue entries with prices in USD per million tokens; those the
    /// operator's overrides file changed say `overridden: true`.
    #[schema(value_type = Vec<Object>)]
    models: Vec<Value>,
}

/// The model catalogue, with the operator's overrides applied.
#[utoipa::path(get, path = "/admin/v1/models", tag = "system", params(ModelsQuery),
    responses((status = 200, body = ModelList), (status = 404, body = ErrorBody)))]
pub(super) async fn models(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ModelsQuery>,
) -> AdminResult<Json<ModelList>> {
    let host = shared.host();
    if let Some(id) = &query.provider
        && host.provider_info(id).is_none()
    {
        return Err(AdminError::not_found("provider", id));
    }
    Ok(Json(ModelList {
        models: crate::views::models_json(host, query.provider.as_deref()),
    }))
}

/// One provider's health check and its circuits.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderHealth {
    provider: String,
    healthy: bool,
    latency_ms: u64,
    models_available: Option<u32>,
    detail: Option<String>,
    /// The failure's kind and message when unhealthy.
    error_kind: Option<String>,
    error: Option<String>,
    /// Circuit of each base URL called so far: `closed`, `open` or
    /// `half_open`.
    #[schema(value_type = Object)]
    circuits: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthList {
    providers: Vec<ProviderHealth>,
}

/// Runs every provider's health check (with its configured key and base
/// URL) at once and reports its circuit breakers.
#[utoipa::path(get, path = "/admin/v1/providers/health", tag = "system",
    responses((status = 200, body = HealthList)))]
pub(super) async fn providers_health(
    _: Admin,
    State(shared): State<Arc<Shared>>,
) -> Json<HealthList> {
    let host = shared.host();
    let states = shared.router.breakers().states();
    let checks = host.plugins().into_iter().map(|p| {
        let host = host.clone();
        async move {
            let started = std::time::Instant::now();
            let outcome = host.health(&Target::new(&p.id)).await;
            (p.id, outcome, started.elapsed())
        }
    });
    let results = futures::future::join_all(checks).await;
    let providers = results
        .into_iter()
        .map(|(provider, outcome, took)| {
            let circuits: serde_json::Map<String, Value> = states
                .iter()
                .filter(|(p, _, _)| *p == provider)
                .map(|(_, base_url, state)| (base_url.clone(), json!(state)))
                .collect();
            match outcome {
                Ok(ok) => ProviderHealth {
                    provider,
                    healthy: true,
                    latency_ms: ok.latency.as_millis() as u64,
                    models_available: ok.report.models_available,
                    detail: Some(ok.report.detail),
                    error_kind: None,
                    error: None,
                    circuits: Value::Object(circuits),
                },
                Err(err) => ProviderHealth {
                    provider,
                    healthy: false,
                    latency_ms: took.as_millis() as u64,
                    models_available: None,
                    detail: None,
                    error_kind: Some(err.kind().to_string()),
                    error: Some(err.to_string()),
                    circuits: Value::Object(circuits),
                },
            }
        })
        .collect();
    Json(HealthList { providers })
}

/// A chat through any agent (`agent:NAME`) or `provider/model`: the body
/// and the answer are exactly those of `POST /v1/chat/completions` (SSE
/// when `stream` is true), with `x-request-id` for
/// `GET /admin/v1/usage/requests/{request_id}`.
#[utoipa::path(post, path = "/admin/v1/playground/chat", tag = "system",
    request_body(content = Object, description = "An OpenAI chat-completions request"),
    responses((status = 200, description = "An OpenAI chat completion, or its SSE stream")))]
pub(super) async fn playground(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    tracing::debug!(target: "llmhost::admin", admin = %admin.name, "playground chat");
    until_cut(&shared, Protocol::OpenAi, |cx| {
        chat_as(&shared, cx, &body, Caller::Master)
    })
    .await
}

/// This API's OpenAPI 3.1 document, generated from its handlers.
#[utoipa::path(get, path = "/admin/v1/openapi.json", tag = "system",
    security(()),
    responses((status = 200, body = Object, description = "The OpenAPI document")))]
pub(super) async fn openapi() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        serde_json::to_string_pretty(&super::routes().1).unwrap_or_else(|_| "{}".to_owned())
    });
    let mut response = text.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
