//! A/B experiments of agents: create, list, stop, report.

use super::auth::Admin;
use super::{AdminResult, ErrorBody, parse};
use crate::gateway::server::Shared;
use crate::service::{Experiment, ExperimentReport, NewExperiment};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExperimentList {
    experiments: Vec<Experiment>,
}

/// Every experiment, active and stopped, by name.
#[utoipa::path(get, path = "/admin/v1/experiments", tag = "experiments",
    responses((status = 200, body = ExperimentList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_experiments(
    _: Admin,
    State(shared): State<Arc<Shared>>,
) -> AdminResult<Json<ExperimentList>> {
    let experiments = shared.service.experiments().await?;
    Ok(Json(ExperimentList { experiments }))
}

/// Starts an experiment: the agent's calls are split across the variants
/// by weight (sticky per end-user `user`, or per request). An agent has at
/// most one active experiment (409 otherwise).
#[utoipa::path(post, path = "/admin/v1/experiments", tag = "experiments",
    request_body = NewExperiment,
    responses((status = 201, body = Experiment), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_experiment(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> AdminResult<(StatusCode, Json<Experiment>)> {
    let new: NewExperiment = parse(&body)?;
    let experiment = shared.service.create_experiment(new).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name,
        experiment = %experiment.name, agent = %experiment.agent, "experiment created");
    Ok((StatusCode::CREATED, Json(experiment)))
}

/// One experiment.
#[utoipa::path(get, path = "/admin/v1/experiments/{name}", tag = "experiments",
    params(("name" = String, Path, description = "The experiment's name")),
    responses((status = 200, body = Experiment), (status = 404, body = ErrorBody)))]
pub(super) async fn get_experiment(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<Experiment>> {
    Ok(Json(shared.service.experiment(&name).await?))
}

/// Stops an experiment: its agent's calls go to its configs again; its
/// report stays. 409 if it was stopped already.
#[utoipa::path(post, path = "/admin/v1/experiments/{name}/stop", tag = "experiments",
    params(("name" = String, Path, description = "The experiment's name")),
    responses((status = 200, body = Experiment), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn stop_experiment(
    admin: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<Experiment>> {
    let experiment = shared.service.stop_experiment(&name).await?;
    tracing::info!(target: "llmhost::admin", admin = %admin.name, experiment = %name,
        "experiment stopped");
    Ok(Json(experiment))
}

/// Per variant: calls, errors, fallbacks, p50/p99 latency, tokens, cost
/// per call, and the 95 % confidence interval (Welch's t) of the
/// difference in mean cost and mean latency against the first variant.
#[utoipa::path(get, path = "/admin/v1/experiments/{name}/report", tag = "experiments",
    params(("name" = String, Path, description = "The experiment's name")),
    responses((status = 200, body = ExperimentReport), (status = 404, body = ErrorBody)))]
pub(super) async fn report(
    _: Admin,
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> AdminResult<Json<ExperimentReport>> {
    Ok(Json(shared.service.experiment_report(&name).await?))
}
