//! The admin API under `/admin/v1/`: agents and their configs, API keys,
//! virtual keys, admin tokens, usage and spend, plugins, the catalogue and
//! provider health, as JSON, for the master key, admin tokens and the
//! console's sessions ([`auth`]).
//!
//! Every route calls the same service functions as the CLI, so it
//! validates the same way and fails with the same typed errors: a
//! [`crate::Error`] becomes an [`AdminError`] here, once. The OpenAPI
//! document (`GET /admin/v1/openapi.json`) is generated from the handlers'
//! annotations by `utoipa`.

mod agents;
pub(super) mod auth;
mod configs;
mod experiments;
mod keys;
mod system;
mod usage;

use super::server::Shared;
use crate::error::{Error, ErrorKind};
use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) use auth::Sessions;

/// A failure as the admin API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub status: StatusCode,
    /// The stable error kind (`validation`, `not_found`, …).
    pub kind: ErrorKind,
    pub message: String,
    /// The input field at fault, for validation failures.
    pub field: Option<String>,
}

/// `{"error": {...}}`: every admin failure.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
struct ErrorObject {
    /// Stable snake_case kind: `validation`, `not_found`, `conflict`,
    /// `unauthorized`, `forbidden`, `invalid_request`, …
    kind: ErrorKind,
    message: String,
    /// The input field at fault (`temperature`, `prices.input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl AdminError {
    pub(crate) fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// 422 naming `field`.
    pub(crate) fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: ErrorKind::Validation,
            message: format!("invalid {field}: {}", message.into()),
            field: Some(field),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, message)
    }

    pub(crate) fn not_found(what: &str, key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
            format!("{what} `{key}` not found"),
        )
    }
}

impl From<Error> for AdminError {
    fn from(err: Error) -> Self {
        Self::from(&err)
    }
}

impl From<&Error> for AdminError {
    fn from(err: &Error) -> Self {
        let status = match err {
            Error::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::InvalidConfig(_) | Error::UnknownProvider(_) | Error::UnknownModel { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::Encryption { .. } => StatusCode::CONFLICT,
            Error::Budget { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::SharedUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        };
        let field = match err {
            Error::Validation { field, .. } => Some((*field).to_owned()),
            Error::UnknownProvider(_) => Some("provider".to_owned()),
            Error::UnknownModel { .. } => Some("model".to_owned()),
            _ => None,
        };
        let message = match err {
            // The database's path and engine messages stay in the log.
            Error::Database(_) | Error::Internal(_) => {
                tracing::error!(error = %err, "admin request failed");
                "the server failed to complete the request; see its log".to_owned()
            }
            _ => err.to_string(),
        };
        Self {
            status,
            kind: err.kind(),
            message,
            field,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorObject {
                kind: self.kind,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) type AdminResult<T> = Result<T, AdminError>;

/// The body as `T`: malformed JSON is a 400; a field of the wrong type or
/// a missing required field is a 422 naming the field.
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> AdminResult<T> {
    if body.is_empty() {
        return Err(AdminError::bad_request("the request needs a JSON body"));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut json) {
        Ok(value) => Ok(value),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(AdminError::bad_request(format!(
                    "the body is not valid JSON: {inner}"
                )))
            } else {
                let message = strip_position(&inner.to_string());
                let field = if path == "." {
                    missing_field(&message).unwrap_or_else(|| "body".to_owned())
                } else {
                    path
                };
                let (field, message) = deeper(&field, &message);
                Err(AdminError::validation(field, message))
            }
        }
    }
}

/// A value's own check may name a field inside `field` (`invalid
/// prices.input: …`): then that field, and the message without its name.
pub(crate) fn deeper(field: &str, message: &str) -> (String, String) {
    if let Some(rest) = message.strip_prefix(&format!("invalid {field}"))
        && let Some((inner, detail)) = rest.split_once(": ")
        && (inner.is_empty() || inner.starts_with('.'))
        && !inner.contains(' ')
    {
        return (format!("{field}{inner}"), detail.to_owned());
    }
    (field.to_owned(), message.to_owned())
}

/// The field of serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// serde's message without its " at line 1 column 9" suffix.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Bearer security of the document: the master key or an admin token.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The master key (LLMHOST_MASTER_KEY) or an admin token \
                         (`llmhost admin-tokens create NAME`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "The console's session; mutating requests also need the \
                 `x-csrf-token` header of the session.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "llmhost admin API",
        description = "Manage agents, LLM configs, keys and budgets, and read usage and spend, \
                       of an `llmhost serve` gateway."
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    components(schemas(ErrorBody, usage::GroupBy)),
    tags(
        (name = "agents", description = "Agents, their LLM configs and budgets"),
        (name = "keys", description = "Virtual keys, admin tokens and encryption"),
        (name = "usage", description = "Usage, spend and latency"),
        (name = "experiments", description = "A/B experiments of agents and their reports"),
        (name = "system", description = "Plugins, the catalogue, provider health, the playground"),
    )
)]
struct ApiDoc;

/// The admin routes and the OpenAPI document describing exactly them.
pub(super) fn routes() -> (axum::Router<Arc<Shared>>, utoipa::openapi::OpenApi) {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(
            agents::get_agent,
            configs::patch_agent,
            agents::delete_agent
        ))
        .routes(routes!(configs::list_configs, configs::create_config))
        .routes(routes!(configs::reorder_configs))
        .routes(routes!(
            configs::get_config,
            configs::patch_config,
            configs::delete_config
        ))
        .routes(routes!(configs::validate_config))
        .routes(routes!(configs::put_api_key, configs::delete_api_key))
        .routes(routes!(agents::put_budget, agents::delete_budget))
        .routes(routes!(agents::put_cache, agents::delete_cache))
        .routes(routes!(keys::list_virtual_keys, keys::create_virtual_key))
        .routes(routes!(keys::get_virtual_key, keys::revoke_virtual_key))
        .routes(routes!(keys::list_tokens, keys::create_token))
        .routes(routes!(keys::revoke_token))
        .routes(routes!(keys::encryption))
        .routes(routes!(
            experiments::list_experiments,
            experiments::create_experiment
        ))
        .routes(routes!(experiments::get_experiment))
        .routes(routes!(experiments::stop_experiment))
        .routes(routes!(experiments::report))
        .routes(routes!(usage::totals))
        .routes(routes!(usage::series))
        .routes(routes!(usage::request))
        .routes(routes!(usage::csv))
        .routes(routes!(system::plugins))
        .routes(routes!(system::plugin))
        .routes(routes!(system::models))
        .routes(routes!(system::providers_health))
        .routes(routes!(system::playground))
        .routes(routes!(system::openapi))
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    (router, api)
}
