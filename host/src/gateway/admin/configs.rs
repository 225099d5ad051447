//! An agent's LLM configs: create, read, update with compare-and-set,
//! delete, reorder, validate, and their API keys (write-only).

use super::agents::AgentView;
use super::auth::Admin;
use super::{AdminError, AdminResult, ErrorBody, parse};
use crate::gateway::server::Shared;
use crate::router::Strategy;
use crate::service::{ConfigUpdate, LlmConfig, NewConfig};
use crate::store::ConfigFields;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConfigList {
    /// In the order a call tries them.
    configs: Vec<LlmConfig>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Order {
    /// Every config id of the agent, first to be tried first.
    ids: Vec<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyInput {
    /// The vendor's API key; stored encrypted, never shown again.
    #[schema(value_type = String)]
    api_key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentPatch {
    /// The `updated_at` the change was based on; a stale one is a 409.
    updated_at: String,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::store::nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// How calls pick among the agent's configs of one priority.
    balance: Option<Strategy>,
}

/// The health check's verdict on a config.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ValidationView {
    config: LlmConfig,
    healthy: bool,
    latency_ms: Option<u64>,
    models_available: Option<u32>,
    detail: Option<String>,
    error_kind: Option<String>,
    error: Option<String>,
}

/// A config id from the path; one that is not a number names nothing.
fn id_of(text: &str) -> AdminResult<i64> {
    text.parse()
        .map_err(|_| AdminError::not_found("config", text))
}

/// The names a config body may have: every field, the key, and (for
/// updates) `updated_at`. Serde's `flatten` lets unknown names through,
/// so they are checked here: a misspelt field is a 422, not a silent no-op.
fn refuse_unknown(body: &Bytes, extra: &[&str]) -> AdminResult<()> {
    let Ok(Value::Object(given)) = serde_json::from_slice::<Value>(body) else {
        // Not an object: the typed parse says what is wrong.
        return Ok(());
    };
    let known = ConfigFields::NAMES;
    for name in given.keys() {
        let name_str = name.as_str();
        if !known.contains(&name_str) && name_str != "api_key" && !extra.contains(&name_str) {
            return Err(AdminError::validation(
                name.clone(),
                format!(
                    "unknown field `{name}` (fields: {}, api_key{})",
                    known.join(", "),
                    extra.iter().map(|e| format!(", {e}")).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// The body as `T`, naming the field at fault. The config types are
/// flattened, which hides from serde which member failed; then each member
/// is tried alone, beside `base` (stand-ins for the required fields), and
/// the first that fails is the one named.
fn parse_config<T: DeserializeOwned>(body: &Bytes, base: &[(&str, Value)]) -> AdminResult<T> {
    let err = match parse::<T>(body) {
        Ok(value) => return Ok(value),
        Err(err) if err.field.as_deref() == Some("body") => err,
        Err(err) => return Err(err),
    };
    let Ok(Value::Object(given)) = serde_json::from_slice::<Value>(body) else {
        return Err(err);
    };
    for (name, value) in &given {
        let mut alone: Map<String, Value> = base
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        alone.insert(name.clone(), value.clone());
        let bytes = Bytes::from(Value::Object(alone).to_string());
        if let Err(found) = parse::<T>(&bytes) {
            if found.field.as_deref() != Some("body") {
                return Err(found);
            }
            let detail = found
                .message
                .strip_prefix("invalid body: ")
                .unwrap_or(&found.message);
            let (field, detail) = super::deeper(name, detail);
            return Err(AdminError::validation(field, detail));
        }
    }
    Err(err)
}

/// Stand-ins for a new config's required fields.
fn required() -> [(&'static str, Value); 2] {
    [
        ("provider", Value::from("openai")),
        ("model", Value::from("gpt-4o-mini")),
    ]
}

/// An agent's configs in the order they are tried.
#[utoipa::path(get, path = "/admin/v1/agents/{name}/configs", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, body = ConfigList), (status = 404, body = ErrorBody)))]
pub(super) async fn list_configs(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<ConfigList>> {
    Ok(Json(ConfigList {
        configs: shared.service.configs(&name).await?,
    }))
}

/// Adds a config to the agent; `api_key` is stored encrypted and never
/// returned.
#[utoipa::path(post, path = "/admin/v1/agents/{name}/configs", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    request_body = NewConfig,
    responses((status = 201, body = LlmConfig), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn create_config(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> AdminResult<(StatusCode, Json<LlmConfig>)> {
    refuse_unknown(&body, &[])?;
    let new: NewConfig = parse_config(&body, &required())?;
    let config = shared.service.create_config(&name, new).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, config = config.id, "config created");
    Ok((StatusCode::CREATED, Json(config)))
}

/// Sets the priorities of the agent's configs to the order of `ids`.
#[utoipa::path(put, path = "/admin/v1/agents/{name}/configs/order", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    request_body = Order,
    responses((status = 200, body = ConfigList), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn reorder_configs(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> AdminResult<Json<ConfigList>> {
    let Order { ids } = parse(&body)?;
    let configs = shared.service.reorder_configs(&name, &ids).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "configs reordered");
    Ok(Json(ConfigList { configs }))
}

/// One config.
#[utoipa::path(get, path = "/admin/v1/configs/{id}", tag = "agents",
    params(("id" = i64, Path, description = "The config's id")),
    responses((status = 200, body = LlmConfig), (status = 404, body = ErrorBody)))]
pub(super) async fn get_config(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> AdminResult<Json<LlmConfig>> {
    Ok(Json(shared.service.config(id_of(&id)?).await?))
}

/// Changes the fields the body names (`null` clears one) if the config's
/// `updated_at` is still the one given; else 409.
#[utoipa::path(patch, path = "/admin/v1/configs/{id}", tag = "agents",
    params(("id" = i64, Path, description = "The config's id")),
    request_body(content = ConfigUpdate,
        description = "`updated_at` (required) and the fields to change"),
    responses((status = 200, body = LlmConfig), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn patch_config(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<LlmConfig>> {
    let id = id_of(&id)?;
    refuse_unknown(&body, &["updated_at"])?;
    #[derive(Deserialize)]
    struct Stamp {
        updated_at: Option<String>,
    }
    let Stamp { updated_at } = parse(&body)?;
    let Some(updated_at) = updated_at else {
        return Err(AdminError::validation(
            "updated_at",
            "is required: send the `updated_at` of the config as you read it",
        ));
    };
    let update: ConfigUpdate = parse_config(&body, &[])?;
    let config = shared
        .service
        .update_config(id, Some(&updated_at), update)
        .await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, config = id, "config updated");
    Ok(Json(config))
}

/// Deletes a config; its usage history stays.
#[utoipa::path(delete, path = "/admin/v1/configs/{id}", tag = "agents",
    params(("id" = i64, Path, description = "The config's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_config(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> AdminResult<StatusCode> {
    let id = id_of(&id)?;
    shared.service.delete_config(id).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, config = id, "config deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the provider's health check with the config's key and base URL.
#[utoipa::path(post, path = "/admin/v1/configs/{id}/validate", tag = "agents",
    params(("id" = i64, Path, description = "The config's id")),
    responses((status = 200, body = ValidationView), (status = 404, body = ErrorBody)))]
pub(super) async fn validate_config(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> AdminResult<Json<ValidationView>> {
    let validation = shared.service.validate_config(id_of(&id)?).await?;
    let view = match validation.health {
        Ok(outcome) => ValidationView {
            config: validation.config,
            healthy: true,
            latency_ms: Some(outcome.latency.as_millis() as u64),
            models_available: outcome.report.models_available,
            detail: Some(outcome.report.detail),
            error_kind: None,
            error: None,
        },
        Err(err) => ValidationView {
            config: validation.config,
            healthy: false,
            latency_ms: None,
            models_available: None,
            detail: None,
            error_kind: Some(err.kind().to_string()),
            error: Some(err.to_string()),
        },
    };
    Ok(Json(view))
}

/// Stores the config's API key (encrypted, bound to its provider and base
/// URL); the response shows only `has_api_key` and a hint.
#[utoipa::path(put, path = "/admin/v1/configs/{id}/api-key", tag = "agents",
    params(("id" = i64, Path, description = "The config's id")),
    request_body = ApiKeyInput,
    responses((status = 200, body = LlmConfig), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn put_api_key(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<LlmConfig>> {
    let id = id_of(&id)?;
    let ApiKeyInput { api_key } = parse(&body)?;
    let update = ConfigUpdate {
        api_key: Some(Some(SecretString::from(api_key))),
        ..ConfigUpdate::default()
    };
    let config = shared.service.update_config(id, None, update).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, config = id, "config API key set");
    Ok(Json(config))
}

/// Removes the config's stored API key (the provider's environment
/// variable is used again).
#[utoipa::path(delete, path = "/admin/v1/configs/{id}/api-key", tag = "agents",
    params(("id" = i64, Path, description = "The config's id")),
    responses((status = 200, body = LlmConfig), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_api_key(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> AdminResult<Json<LlmConfig>> {
    let id = id_of(&id)?;
    let update = ConfigUpdate {
        api_key: Some(None),
        ..ConfigUpdate::default()
    };
    let config = shared.service.update_config(id, None, update).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, config = id, "config API key cleared");
    Ok(Json(config))
}

/// Changes the agent's description if its `updated_at` is still the one
/// given; else 409.
#[utoipa::path(patch, path = "/admin/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    request_body = AgentPatch,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn patch_agent(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> AdminResult<Json<AgentView>> {
    let patch: AgentPatch = parse(&body)?;
    let agent = shared
        .service
        .update_agent(
            &name,
            Some(&patch.updated_at),
            patch.description,
            patch.balance,
        )
        .await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "agent updated");
    Ok(Json(super::agents::view(&shared, agent).await?))
}
