//! Agents, their budgets and their LLM configs.

use super::auth::Admin;
use super::{AdminResult, ErrorBody, parse};
use crate::gateway::server::Shared;
use crate::router::Strategy;
use crate::service::Budgets;
use crate::store::{Agent, AgentBudget, BudgetPeriod};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use llmhost_registry::rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// An agent and how many configs it has.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentView {
    #[serde(flatten)]
    agent: Agent,
    /// Configs of the agent, enabled or not.
    configs: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentList {
    agents: Vec<AgentView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAgent {
    /// 1 to 64 letters, digits, `-`, `_` or `.`.
    name: String,
    description: Option<String>,
    /// How calls pick among the agent's configs of one priority
    /// [default: `priority`, no balancing].
    #[serde(default)]
    balance: Strategy,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetInput {
    /// Most USD per period, a decimal string or number, more than 0.
    #[schema(value_type = Option<String>)]
    usd: Option<Decimal>,
    /// Most input plus output tokens per period.
    tokens: Option<u64>,
    period: BudgetPeriod,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheInput {
    /// Seconds the response cache serves the agent's answers, 1 to
    /// 2592000 (30 days).
    ttl_secs: u64,
    /// Whether requests that sample (temperature above 0, or unset) are
    /// cached too.
    #[serde(default)]
    sampled: bool,
}

pub(super) async fn view(shared: &Shared, agent: Agent) -> AdminResult<AgentView> {
    let configs = shared.service.store().configs(agent.id, false).await?.len();
    Ok(AgentView { agent, configs })
}

/// Every agent, by name.
#[utoipa::path(get, path = "/admin/v1/agents", tag = "agents",
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_agents(
    _: Admin,
    State(shared): State<Arc<Shared>>,
) -> AdminResult<Json<AgentList>> {
    let mut agents = Vec::new();
    for agent in shared.service.agents().await? {
        agents.push(view(&shared, agent).await?);
    }
    Ok(Json(AgentList { agents }))
}

/// Creates an agent.
#[utoipa::path(post, path = "/admin/v1/agents", tag = "agents", request_body = NewAgent,
    responses((status = 201, body = AgentView), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn create_agent(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> AdminResult<(StatusCode, Json<AgentView>)> {
    let new: NewAgent = parse(&body)?;
    let agent = shared
        .service
        .create_balanced_agent(&new.name, new.description.as_deref(), new.balance)
        .await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %agent.name, "agent created");
    Ok((StatusCode::CREATED, Json(view(&shared, agent).await?)))
}

/// One agent.
#[utoipa::path(get, path = "/admin/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_agent(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<AgentView>> {
    let agent = shared.service.agent(&name).await?;
    Ok(Json(view(&shared, agent).await?))
}

/// Deletes an agent and its configs; its usage history stays.
#[utoipa::path(delete, path = "/admin/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_agent(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<StatusCode> {
    shared.service.delete_agent(&name).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "agent deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the agent's budget: USD, tokens or both, per period.
#[utoipa::path(put, path = "/admin/v1/agents/{name}/budget", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    request_body = BudgetInput,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn put_budget(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> AdminResult<Json<AgentView>> {
    let input: BudgetInput = parse(&body)?;
    let budget = AgentBudget {
        usd: input.usd,
        tokens: input.tokens,
        period: input.period,
    };
    let agent = Budgets::new(shared.service.store().clone())
        .set_agent_budget(&name, budget)
        .await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "agent budget set");
    Ok(Json(view(&shared, agent).await?))
}

/// Removes the agent's budget.
#[utoipa::path(delete, path = "/admin/v1/agents/{name}/budget", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_budget(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<AgentView>> {
    let agent = Budgets::new(shared.service.store().clone())
        .clear_agent_budget(&name)
        .await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "agent budget cleared");
    Ok(Json(view(&shared, agent).await?))
}

/// Turns the response cache on for the agent's calls: identical requests
/// within the TTL are served from the stored answer.
#[utoipa::path(put, path = "/admin/v1/agents/{name}/cache", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    request_body = CacheInput,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn put_cache(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> AdminResult<Json<AgentView>> {
    let input: CacheInput = parse(&body)?;
    let ttl = std::time::Duration::from_secs(input.ttl_secs);
    let agent = shared
        .service
        .set_agent_cache(&name, Some((ttl, input.sampled)))
        .await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "agent cache set");
    Ok(Json(view(&shared, agent).await?))
}

/// Turns the response cache off for the agent's calls.
#[utoipa::path(delete, path = "/admin/v1/agents/{name}/cache", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_cache(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<AgentView>> {
    let agent = shared.service.set_agent_cache(&name, None).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, agent = %name, "agent cache cleared");
    Ok(Json(view(&shared, agent).await?))
}
