//! Calls made on an agent's behalf. The agent's enabled configs, in
//! priority order, each followed by its fallback pair, are the routes of
//! the call's [`Plan`], after the assigned variant's route when the agent
//! has an active experiment; configs of one priority form a balanced
//! group when the agent has a strategy other than `priority`, and each
//! config's context fallback rides on its route. The router does the rest.

use super::ConfigService;
use crate::error::Error;
use crate::host::{ChatOutcome, Target};
use crate::router::{CallTags, Group, Member, Plan, Route, RouteDefaults, RoutedStream, Strategy};
use crate::store::Agent;
use crate::types::ChatRequest;
use std::time::Duration;

/// An agent's answer: the host's outcome and which route served it.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    pub agent: String,
    /// The config whose route served the call.
    pub config_id: i64,
    /// The provider and model that answered.
    pub provider: String,
    pub model: String,
    /// Whether a route other than the first (a fallback) answered.
    pub fallback: bool,
    /// Attempts made, failed ones included.
    pub attempts: u32,
    /// The answer; its `cost_usd` uses the config's custom prices when it
    /// has them.
    pub outcome: ChatOutcome,
    /// The call's request id, as its usage events record it.
    pub request_id: String,
    /// The agent's experiment and the variant the call was assigned, when
    /// it has an active one.
    pub experiment: Option<(String, String)>,
    /// What the response cache did; `None` when the agent has no cache.
    pub cache: Option<crate::router::CacheStatus>,
}

/// An agent's streamed answer: see [`RoutedStream`].
pub type AgentStream = RoutedStream;

impl ConfigService {
    /// The plan of a call for `agent` made on behalf of end-user `user`
    /// (the request's `user`): the route of the variant the agent's
    /// active experiment assigns, if it has one; then each enabled config
    /// by priority, then its fallback pair. Attempts and deadline are the
    /// first config's. Stored keys are decrypted here, so a config whose
    /// key no longer decrypts (its base URL was changed outside llmhost)
    /// fails the call before anything is sent.
    pub async fn plan(
        &self,
        agent: &str,
        tags: CallTags,
        user: Option<&str>,
    ) -> Result<(Agent, Plan), Error> {
        let agent = self.agent(agent).await?;
        let configs = self.store.configs(agent.id, true).await?;
        let mut routes = Vec::new();
        let mut experiment = None;
        if let Some((route, tag)) = self.experiment_route(&agent, &configs, user).await? {
            routes.push(route);
            experiment = Some(tag);
        }
        if routes.is_empty() && configs.is_empty() {
            return Err(Error::NotFound {
                what: "enabled config of agent",
                key: agent.name.clone(),
            });
        }
        let max_attempts = configs.first().and_then(|c| c.fields.max_attempts);
        let deadline = configs
            .first()
            .and_then(|c| c.fields.deadline_ms)
            .map(Duration::from_millis);
        let mut groups: Vec<(i64, Group)> = Vec::new();
        for row in &configs {
            let config = &row.fields;
            let defaults = RouteDefaults {
                temperature: config.temperature.map(|t| t as f32),
                max_tokens: config.max_tokens,
                top_p: config.top_p.map(|p| p as f32),
            };
            // A fallback to the config's own provider (another model)
            // keeps its key and base URL; another provider is reached
            // with its environment variables and settings.
            let target_of = |provider: &String| {
                if *provider == config.provider {
                    self.target(row)
                } else {
                    Ok(Target::new(provider))
                }
            };
            // A fallback route (the pair, or the larger context window):
            // catalogue prices, no balancing, no further context fallback.
            let fallback_to = |provider: &String, model: &String| -> Result<Route, Error> {
                Ok(Route {
                    target: target_of(provider)?,
                    model: model.clone(),
                    defaults,
                    prices: None,
                    config_id: Some(row.id),
                    fallback: true,
                    choice: None,
                    context_fallback: None,
                })
            };
            let context_fallback = match (
                &config.context_fallback_provider,
                &config.context_fallback_model,
            ) {
                (Some(provider), Some(model)) => Some(Box::new(fallback_to(provider, model)?)),
                _ => None,
            };
            let index = routes.len();
            routes.push(Route {
                target: self.target(row)?,
                model: config.model.clone(),
                defaults,
                prices: config.prices.map(|prices| {
                    let catalogue = self.host.catalogue().get(&config.provider, &config.model);
                    prices.billing(catalogue.map(|model| &model.pricing))
                }),
                config_id: Some(row.id),
                fallback: !routes.is_empty(),
                choice: None,
                context_fallback: context_fallback.clone(),
            });
            let mut pair = None;
            if let (Some(provider), Some(model)) =
                (&config.fallback_provider, &config.fallback_model)
            {
                pair = Some(routes.len());
                routes.push(fallback_to(provider, model)?);
            }
            let member = Member {
                route: index,
                weight: config.weight,
                pair,
            };
            match groups.last_mut() {
                Some((priority, group)) if *priority == config.priority => {
                    group.members.push(member)
                }
                _ => groups.push((
                    config.priority,
                    Group {
                        strategy: agent.balance,
                        members: vec![member],
                    },
                )),
            }
        }
        let balance = if agent.balance == Strategy::Priority {
            Vec::new()
        } else {
            groups
                .into_iter()
                .map(|(_, group)| group)
                .filter(|group| group.members.len() > 1)
                .collect()
        };
        let tags = CallTags {
            agent: Some((agent.id, agent.name.clone())),
            route: tags
                .route
                .clone()
                .or_else(|| Some(format!("agent:{}", agent.name))),
            experiment: experiment.or(tags.experiment.clone()),
            ..tags
        };
        let plan = Plan {
            routes,
            max_attempts,
            deadline,
            tags,
            balance,
            cache: agent.cache_policy(),
        };
        Ok((agent, plan))
    }

    /// Sends `request` for the agent: its first enabled config, with
    /// retries, then its fallback, then the next enabled configs by
    /// priority. The request's model is replaced by each route's. Every
    /// attempt is recorded as a usage event.
    pub async fn chat(&self, agent: &str, request: ChatRequest) -> Result<AgentOutcome, Error> {
        self.chat_tagged(agent, request, CallTags::default()).await
    }

    /// [`ConfigService::chat`] with the caller's tags (request id, virtual
    /// key) on its usage events.
    pub async fn chat_tagged(
        &self,
        agent: &str,
        request: ChatRequest,
        tags: CallTags,
    ) -> Result<AgentOutcome, Error> {
        let (agent, plan) = self.plan(agent, tags, request.user.as_deref()).await?;
        let reservation = self.reserve(&agent, &plan, &request).await?;
        let routed = self.router.chat(&plan, &request).await?;
        if let Some(reservation) = reservation {
            // A cache hit spends nothing.
            let (usage, cost) = routed.spent();
            reservation.settle(
                cost,
                u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
            );
        }
        Ok(AgentOutcome {
            agent: agent.name,
            config_id: routed.config_id.unwrap_or_default(),
            provider: routed.provider,
            model: routed.model,
            fallback: routed.fallback,
            attempts: routed.attempts,
            outcome: routed.outcome,
            request_id: routed.request_id,
            experiment: plan.tags.experiment,
            cache: routed.cache,
        })
    }

    /// Streams `request` for the agent, with the same routes, retries and
    /// fallbacks as [`ConfigService::chat`] up to the first chunk; once a
    /// chunk reached the caller a failure ends the stream with its error.
    /// The usage event of the serving attempt is recorded when the stream
    /// ends, fails or is dropped.
    pub async fn stream(&self, agent: &str, request: ChatRequest) -> Result<AgentStream, Error> {
        self.stream_tagged(agent, request, CallTags::default())
            .await
    }

    /// [`ConfigService::stream`] with the caller's tags.
    pub async fn stream_tagged(
        &self,
        agent: &str,
        request: ChatRequest,
        tags: CallTags,
    ) -> Result<AgentStream, Error> {
        let (agent, plan) = self.plan(agent, tags, request.user.as_deref()).await?;
        let reservation = self.reserve(&agent, &plan, &request).await?;
        let mut stream = self.router.stream(&plan, &request).await?;
        if let Some(reservation) = reservation {
            stream.on_end(Box::new(move |usage, cost| {
                reservation.settle(
                    cost,
                    u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
                );
            }));
        }
        Ok(stream)
    }

    /// Reserves the call's worst case in the agent's budget, if it has
    /// one; [`Error::Budget`] when it does not fit.
    async fn reserve(
        &self,
        agent: &Agent,
        plan: &Plan,
        request: &ChatRequest,
    ) -> Result<Option<super::ledger::Reservation>, Error> {
        let limits: Vec<_> = super::ledger::Limit::of_agent(agent).into_iter().collect();
        self.ledger.admit(&self.host, &limits, plan, request).await
    }
}
