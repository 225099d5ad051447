//! What a request must get past before it is sent: authentication, the
//! key's scope and rate limits, the budgets it falls under (its worst
//! case reserved), and `model` turned into the router's [`Plan`].

use super::errors::ApiError;
use super::limits::{KeyLimiter, Taken};
use super::server::{Caller, Shared, presented_key};
use crate::error::Error;
use crate::host::{Host, Target};
use crate::router::{CallTags, Plan, Route};
use crate::service::ledger::{Limit, Reservation, Scope};
use crate::types::ChatRequest;
use axum::http::HeaderMap;
use llmhost_registry::rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Shared {
    /// Whether an `open` gateway's store has gained a virtual key; asked
    /// at most once a second, and true for good once it has.
    pub(super) async fn keys_appeared(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.keys_appeared.load(Ordering::Relaxed) {
            return true;
        }
        {
            let mut checked = self.keys_checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *checked = Some(Instant::now());
        }
        // A store that cannot say is taken to hold keys: closed, not open.
        let appeared = self
            .service
            .store()
            .virtual_keys()
            .await
            .map_or(true, |keys| !keys.is_empty());
        if appeared {
            tracing::warn!("a virtual key was created: the gateway now requires keys");
            self.keys_appeared.store(true, Ordering::Relaxed);
        }
        appeared
    }

    pub(super) async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.open && !self.keys_appeared().await {
            // Open, but a valid virtual key still brings its limits.
            if let (Some(key), Some(keys)) = (presented_key(headers), &self.virtual_keys)
                && let Ok(Some(key)) = keys.authenticate(key).await
            {
                return Ok(Caller::Virtual(Box::new(key)));
            }
            return Ok(Caller::Open);
        }
        let Some(key) = presented_key(headers) else {
            return Err(ApiError::authentication(
                "missing API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
            ));
        };
        // blake3's `Hash` compares in constant time.
        if self
            .master
            .is_some_and(|master| blake3::hash(key.as_bytes()) == master)
        {
            return Ok(Caller::Master);
        }
        if let Some(keys) = &self.virtual_keys {
            match keys.authenticate(key).await {
                Ok(Some(key)) => return Ok(Caller::Virtual(Box::new(key))),
                Ok(None) => {}
                Err(err) => return Err(ApiError::from(&err)),
            }
        }
        // Unknown, revoked and expired keys alike.
        Err(ApiError::authentication("invalid API key"))
    }

    /// The plan of `caller`'s call to `route`, if the caller may make it,
    /// with the call's worst case reserved in every budget it falls under.
    pub(super) async fn admit(
        &self,
        caller: &Caller,
        route: &str,
        mut tags: CallTags,
        request: Option<&ChatRequest>,
    ) -> Result<(Plan, Option<Admission>), ApiError> {
        caller.may_use(route)?;
        caller.tag(&mut tags);
        let user = request.and_then(|r| r.user.as_deref());
        let (plan, agent) = self.plan(route, tags, user).await?;
        let mut admission = Admission::default();
        if let (Caller::Virtual(key), Some(request)) = (caller, request)
            && (key.rpm.is_some() || key.tpm.is_some())
        {
            let tokens =
                crate::router::estimate_input(request) + u64::from(request.max_tokens.unwrap_or(0));
            let taken = self
                .key_limits
                .take_shared(key.id, key.rpm, key.tpm, tokens)
                .await
                .map_err(|err| ApiError::from(&err))?;
            match taken {
                Ok(taken) => admission.taken = Some((self.key_limits.clone(), taken)),
                Err(wait) => {
                    return Err(ApiError::new(
                        429,
                        super::errors::ErrorClass::RateLimit,
                        format!(
                            "this key's rate limit ({}) is reached; try again in {:.1}s",
                            [
                                key.rpm.map(|n| format!("{n} requests a minute")),
                                key.tpm.map(|n| format!("{n} tokens a minute")),
                            ]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(", "),
                            wait.as_secs_f64()
                        ),
                    )
                    .code("rate_limit_exceeded")
                    .retry_after(wait));
                }
            }
        }
        let mut limits = Vec::new();
        if let Caller::Virtual(key) = caller
            && let (Some(usd), Some(period)) = (key.budget_usd, key.budget_period)
        {
            limits.push(Limit {
                scope: Scope::VirtualKey(key.id),
                period,
                usd: Some(usd),
                tokens: None,
            });
        }
        limits.extend(agent.as_ref().and_then(Limit::of_agent));
        let Some(request) = request else {
            return Ok((plan, Some(admission)));
        };
        admission.reservation = self
            .service
            .ledger()
            .admit(self.host(), &limits, &plan, request)
            .await
            .map_err(|err| ApiError::from(&err))?;
        Ok((plan, Some(admission)))
    }

    /// The plan of a call to `model` (`PROVIDER/MODEL` or `agent:NAME`)
    /// for end-user `user` (who an agent's experiment assigns by), and the
    /// agent's record for an agent route.
    pub(super) async fn plan(
        &self,
        model: &str,
        tags: CallTags,
        user: Option<&str>,
    ) -> Result<(Plan, Option<crate::store::Agent>), ApiError> {
        if let Some(agent) = model.strip_prefix("agent:") {
            return match self.service.plan(agent, tags, user).await {
                Ok((agent, plan)) => Ok((plan, Some(agent))),
                Err(Error::NotFound { what: "agent", .. }) => Err(ApiError::not_found(format!(
                    "no agent `{agent}` (see GET /v1/models)"
                ))
                .param("model")
                .code("model_not_found")),
                Err(err) => Err(ApiError::from(&err)),
            };
        }
        let (provider, model_id) = self.split_model(model)?;
        Ok((
            Plan::single(Route::new(Target::new(provider), model_id)).tags(tags),
            None,
        ))
    }

    /// `PROVIDER/MODEL` split at the first `/`, the provider checked.
    pub(super) fn split_model<'m>(&self, model: &'m str) -> Result<(&'m str, &'m str), ApiError> {
        let Some((provider, model_id)) = model
            .split_once('/')
            .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        else {
            return Err(ApiError::not_found(format!(
                "model `{model}` is not a route: use PROVIDER/MODEL (e.g. openai/gpt-4o-mini) \
                 or agent:NAME (see GET /v1/models)"
            ))
            .param("model")
            .code("model_not_found"));
        };
        if self.service.host().provider_info(provider).is_none() {
            return Err(ApiError::not_found(format!(
                "no provider `{provider}` is loaded (see GET /v1/models)"
            ))
            .param("model")
            .code("model_not_found"));
        }
        Ok((provider, model_id))
    }

    pub(super) fn host(&self) -> &Host {
        self.service.host()
    }

    /// Whether `route` names a loaded provider or an agent: only those
    /// become metric labels.
    pub(super) fn known_route(&self, route: &str) -> bool {
        route.starts_with("agent:")
            || route
                .split_once('/')
                .is_some_and(|(provider, _)| self.host().provider_info(provider).is_some())
    }
}

/// What a request holds until it ends: its budget reservation and what
/// it took from its key's rate limits.
#[derive(Default)]
pub(super) struct Admission {
    pub(super) reservation: Option<Reservation>,
    pub(super) taken: Option<(Arc<KeyLimiter>, Taken)>,
}

/// Charges a call's reservation and rate limit with what its usage row
/// records.
pub(super) fn settle(
    admission: Option<Admission>,
    cost: Option<Decimal>,
    usage: &crate::types::Usage,
) {
    let Some(admission) = admission else {
        return;
    };
    let tokens = u64::from(usage.input_tokens) + u64::from(usage.output_tokens);
    if let Some(reservation) = admission.reservation {
        reservation.settle(cost, tokens);
    }
    if let Some((limiter, taken)) = admission.taken {
        limiter.settle(taken, tokens);
    }
}
