//! Virtual keys, admin tokens and the encryption keys' status.

use super::auth::{Admin, require_master};
use super::{AdminError, AdminResult, ErrorBody, parse};
use crate::gateway::server::Shared;
use crate::service::{AdminToken, Budgets, EncryptionStatus, NewVirtualKey, VirtualKey};
use crate::store::BudgetPeriod;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use llmhost_registry::rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use utoipa::ToSchema;

/// A virtual key with its spend in the budget's current window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VirtualKeyView {
    #[serde(flatten)]
    key: VirtualKey,
    spend: SpendView,
}

/// Spend in the current budget window (all time without a budget).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SpendView {
    /// UTC start of the window; `null` for all time.
    window_start: Option<String>,
    #[schema(value_type = String)]
    spent_usd: Decimal,
    /// `null` without a budget.
    #[schema(value_type = Option<String>)]
    remaining_usd: Option<Decimal>,
    requests: u64,
    tokens: u64,
    /// Successful requests to models without a price.
    unpriced: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VirtualKeyList {
    virtual_keys: Vec<VirtualKeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewVirtualKeyInput {
    name: String,
    /// Scope the key to this agent.
    agent: Option<String>,
    /// Model ids (`openai/gpt-4o-mini`, `agent:NAME`) the key may use.
    allowed_models: Option<Vec<String>>,
    /// Most USD per `budget_period`, more than 0.
    #[schema(value_type = Option<String>)]
    budget_usd: Option<Decimal>,
    /// The budget's window; default `month`.
    budget_period: Option<BudgetPeriod>,
    /// Requests per minute.
    rpm: Option<u32>,
    /// Tokens per minute.
    tpm: Option<u32>,
    /// Seconds from now until the key stops working.
    expires_in_secs: Option<u64>,
    /// Seconds the response cache keeps the key's answers (1 to 2592000);
    /// unset: the key's calls are not cached.
    cache_ttl_secs: Option<u64>,
    /// Whether the key's cached answers serve other keys too.
    #[serde(default)]
    cache_shared: bool,
}

/// A new key: shown here once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedVirtualKey {
    virtual_key: VirtualKeyView,
    /// The key itself. Store it now: only its hint is kept.
    key: String,
}

async fn view(shared: &Shared, key: VirtualKey) -> AdminResult<VirtualKeyView> {
    let usage = Budgets::new(shared.service.store().clone())
        .of_virtual_key(&key, SystemTime::now())
        .await?;
    let spend = SpendView {
        remaining_usd: usage.remaining_usd(),
        window_start: usage.window_start,
        spent_usd: usage.spent.cost_usd,
        requests: usage.spent.requests,
        tokens: usage.spent.tokens(),
        unpriced: usage.spent.unpriced,
    };
    Ok(VirtualKeyView { key, spend })
}

fn keys_of(shared: &Shared) -> AdminResult<&crate::service::VirtualKeys> {
    shared.virtual_keys.as_ref().ok_or_else(|| {
        AdminError::new(
            StatusCode::CONFLICT,
            crate::ErrorKind::EncryptionKeyMissing,
            "virtual keys need an encryption key: set LLMHOST_ENCRYPTION_KEY or run `llmhost init`",
        )
    })
}

/// Every virtual key with its spend, by name.
#[utoipa::path(get, path = "/admin/v1/virtual-keys", tag = "keys",
    responses((status = 200, body = VirtualKeyList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_virtual_keys(
    _: Admin,
    State(shared): State<Arc<Shared>>,
) -> AdminResult<Json<VirtualKeyList>> {
    let mut list = Vec::new();
    for key in keys_of(&shared)?.list().await? {
        list.push(view(&shared, key).await?);
    }
    Ok(Json(VirtualKeyList { virtual_keys: list }))
}

/// Creates a virtual key; the key is in this response only.
#[utoipa::path(post, path = "/admin/v1/virtual-keys", tag = "keys",
    request_body = NewVirtualKeyInput,
    responses((status = 201, body = CreatedVirtualKey), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn create_virtual_key(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> AdminResult<(StatusCode, Json<CreatedVirtualKey>)> {
    let input: NewVirtualKeyInput = parse(&body)?;
    let budget = match (input.budget_usd, input.budget_period) {
        (None, None) => None,
        (Some(usd), Some(period)) => Some((usd, period)),
        (Some(usd), None) => Some((usd, BudgetPeriod::Month)),
        (None, Some(_)) => {
            return Err(AdminError::validation(
                "budget_usd",
                "is required with budget_period",
            ));
        }
    };
    let new = NewVirtualKey {
        name: input.name,
        agent: input.agent,
        models: input.allowed_models,
        budget,
        rpm: input.rpm,
        tpm: input.tpm,
        expires_in: input.expires_in_secs.map(Duration::from_secs),
        cache_ttl: input.cache_ttl_secs.map(Duration::from_secs),
        cache_shared: input.cache_shared,
    };
    let (key, secret) = keys_of(&shared)?.create(new).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, virtual_key = %key.name, "virtual key created");
    let created = CreatedVirtualKey {
        virtual_key: view(&shared, key).await?,
        key: secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// One virtual key with its spend.
#[utoipa::path(get, path = "/admin/v1/virtual-keys/{name}", tag = "keys",
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 200, body = VirtualKeyView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_virtual_key(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<VirtualKeyView>> {
    let key = keys_of(&shared)?.get(&name).await?;
    Ok(Json(view(&shared, key).await?))
}

/// Revokes a virtual key: refused from now on, its usage kept.
#[utoipa::path(delete, path = "/admin/v1/virtual-keys/{name}", tag = "keys",
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 200, body = VirtualKeyView), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_virtual_key(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<VirtualKeyView>> {
    let key = keys_of(&shared)?.revoke(&name).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, virtual_key = %name, "virtual key revoked");
    Ok(Json(view(&shared, key).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    tokens: Vec<AdminToken>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    name: String,
}

/// A new admin token: shown here once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    admin_token: AdminToken,
    /// The token itself; only its hint is kept.
    token: String,
}

/// Every admin token (master key only).
#[utoipa::path(get, path = "/admin/v1/tokens", tag = "keys",
    responses((status = 200, body = TokenList), (status = 403, body = ErrorBody)))]
pub(super) async fn list_tokens(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
) -> AdminResult<Json<TokenList>> {
    require_master(&admin)?;
    Ok(Json(TokenList {
        tokens: shared.admin_tokens.list().await?,
    }))
}

/// Creates an admin token (master key only).
#[utoipa::path(post, path = "/admin/v1/tokens", tag = "keys", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_token(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> AdminResult<(StatusCode, Json<CreatedToken>)> {
    require_master(&admin)?;
    let NewToken { name } = parse(&body)?;
    let (token, secret) = shared.admin_tokens.create(&name).await?;
    tracing::info!(target: "llmhost::admin", admin_token = %name, "admin token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            admin_token: token,
            token: secret.expose_secret().to_owned(),
        }),
    ))
}

/// Revokes an admin token and ends its sessions (master key only).
#[utoipa::path(delete, path = "/admin/v1/tokens/{name}", tag = "keys",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 200, body = AdminToken), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_token(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<AdminToken>> {
    require_master(&admin)?;
    let token = shared.admin_tokens.revoke(&name).await?;
    tracing::info!(target: "llmhost::admin", admin_token = %name, "admin token revoked");
    Ok(Json(token))
}

/// The encryption keys and which of them the stored API keys use.
#[utoipa::path(get, path = "/admin/v1/encryption", tag = "keys",
    responses((status = 200, body = EncryptionStatus)))]
pub(super) async fn encryption(
    _: Admin,
    State(shared): State<Arc<Shared>>,
) -> AdminResult<Json<EncryptionStatus>> {
    Ok(Json(shared.service.encryption_status().await?))
}
