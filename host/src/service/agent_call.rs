//! Calls made on an agent's behalf: the primary config picks provider,
//! model, parameters, base URL and key, and every attempt is recorded as a
//! usage event.

use super::ConfigService;
use crate::error::Error;
use crate::host::{ChatOutcome, ChatStream};
use crate::store::{ConfigRow, UsageEvent, UsageOutcome};
use crate::types::{ChatRequest, Chunk, Usage};
use llmhost_registry::rust_decimal::Decimal;
use std::time::{Duration, Instant};

/// An agent's answer: the host's outcome, which config served it and the
/// usage event recorded for it.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    pub agent: String,
    pub config_id: i64,
    pub model: String,
    /// The answer; its `cost_usd` uses the config's custom prices when it
    /// has them.
    pub outcome: ChatOutcome,
    /// The id of the usage row, `None` if it could not be written (the
    /// failure is logged; the answer is not thrown away for it).
    pub usage_event: Option<i64>,
}

/// What is recorded for each attempt, fixed when the call starts.
#[derive(Debug, Clone)]
struct Attempt {
    agent_id: i64,
    agent_name: String,
    config_id: i64,
    provider: String,
    model: String,
    custom_prices: Option<(Decimal, Decimal)>,
    started: Instant,
    streamed: bool,
}

impl Attempt {
    fn new(row: &ConfigRow, agent_name: &str, streamed: bool) -> Self {
        Self {
            agent_id: row.agent_id,
            agent_name: agent_name.to_owned(),
            config_id: row.id,
            provider: row.provider.clone(),
            model: row.model_name.clone(),
            custom_prices: row
                .custom_pricing
                .then_some((row.cost_per_1k_input_tokens, row.cost_per_1k_output_tokens)),
            started: Instant::now(),
            streamed,
        }
    }

    /// The config's prices when it has its own, else the registry's cost.
    fn cost(&self, usage: &Usage, registry: Option<Decimal>) -> Option<Decimal> {
        match self.custom_prices {
            Some((input, output)) => {
                let thousand = Decimal::from(1000u32);
                Some(
                    (Decimal::from(usage.input_tokens) * input
                        + Decimal::from(usage.output_tokens) * output)
                        / thousand,
                )
            }
            None => registry,
        }
    }

    fn event(
        &self,
        usage: Option<&Usage>,
        cost: Option<Decimal>,
        ttft: Option<Duration>,
        outcome: UsageOutcome,
    ) -> UsageEvent {
        let usage = usage.copied().unwrap_or_else(Usage::unreported);
        UsageEvent {
            agent_id: Some(self.agent_id),
            agent_name: self.agent_name.clone(),
            config_id: Some(self.config_id),
            provider: self.provider.clone(),
            model: self.model.clone(),
            input_tokens: u64::from(usage.input_tokens),
            output_tokens: u64::from(usage.output_tokens),
            cache_read_tokens: u64::from(usage.cache_read_tokens),
            cache_write_tokens: u64::from(usage.cache_write_tokens),
            reasoning_tokens: u64::from(usage.reasoning_tokens),
            estimated: usage.estimated,
            cost_usd: cost,
            latency: self.started.elapsed(),
            time_to_first_token: ttft,
            outcome,
            attempt: 1,
            fallback: false,
            streamed: self.streamed,
        }
    }
}

/// The request as the config shapes it: the config's model always; its
/// temperature, max tokens and top-p where the request sets none.
fn shape(row: &ConfigRow, mut request: ChatRequest) -> ChatRequest {
    request.model = row.model_name.clone();
    if request.temperature.is_none() {
        request.temperature = row.temperature.map(|t| t as f32);
    }
    if request.max_tokens.is_none() {
        request.max_tokens = row.max_tokens;
    }
    if request.top_p.is_none() {
        request.top_p = row.top_p.map(|p| p as f32);
    }
    request
}

impl ConfigService {
    async fn record(&self, event: UsageEvent) -> Option<i64> {
        match self.store.record_usage(event).await {
            Ok(id) => Some(id),
            Err(err) => {
                tracing::error!(error = %err, "could not record a usage event");
                None
            }
        }
    }

    /// Sends `request` with the agent's primary config. The request's
    /// model is replaced by the config's. One usage event is recorded,
    /// whether the call succeeds or fails.
    pub async fn chat(&self, agent: &str, request: ChatRequest) -> Result<AgentOutcome, Error> {
        let (row, agent) = self.primary_row(agent).await?;
        let attempt = Attempt::new(&row, &agent.name, false);
        let request = shape(&row, request);
        let result = match self.target(&row) {
            Ok(target) => self.host.chat(&target, &request).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(mut outcome) => {
                outcome.cost_usd = attempt.cost(&outcome.response.usage, outcome.cost_usd);
                let event = attempt.event(
                    Some(&outcome.response.usage),
                    outcome.cost_usd,
                    None,
                    UsageOutcome::Ok,
                );
                let usage_event = self.record(event).await;
                Ok(AgentOutcome {
                    agent: agent.name,
                    config_id: row.id,
                    model: row.model_name,
                    outcome,
                    usage_event,
                })
            }
            Err(err) => {
                let event =
                    attempt.event(None, None, None, UsageOutcome::Error(err.kind().to_owned()));
                self.record(event).await;
                Err(err)
            }
        }
    }

    /// Streams `request` with the agent's primary config. The usage event
    /// is recorded when the stream ends, fails or is dropped.
    pub async fn stream(&self, agent: &str, request: ChatRequest) -> Result<AgentStream, Error> {
        let (row, agent) = self.primary_row(agent).await?;
        let attempt = Attempt::new(&row, &agent.name, true);
        let request = shape(&row, request);
        let result = match self.target(&row) {
            Ok(target) => self.host.stream(&target, &request).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(stream) => Ok(AgentStream {
                service: self.clone(),
                stream,
                attempt,
                recorded: false,
                usage_event: None,
            }),
            Err(err) => {
                let event =
                    attempt.event(None, None, None, UsageOutcome::Error(err.kind().to_owned()));
                self.record(event).await;
                Err(err)
            }
        }
    }
}

/// An agent's streamed answer. Read it like a [`ChatStream`]; the usage
/// event is written when it ends (before `next` returns `None` or the
/// error), or in the background if it is dropped unfinished (recorded as a
/// `cancelled` error with the usage seen so far).
pub struct AgentStream {
    service: ConfigService,
    stream: ChatStream,
    attempt: Attempt,
    recorded: bool,
    usage_event: Option<i64>,
}

impl AgentStream {
    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Chunk, Error>> {
        if self.recorded {
            return None;
        }
        match self.stream.next().await {
            Some(Ok(chunk)) => Some(Ok(chunk)),
            Some(Err(err)) => {
                self.finish(UsageOutcome::Error(err.kind().to_owned()))
                    .await;
                Some(Err(err))
            }
            None => {
                self.finish(UsageOutcome::Ok).await;
                None
            }
        }
    }

    fn event(&self, outcome: UsageOutcome) -> UsageEvent {
        let usage = self.stream.usage();
        let cost = usage
            .as_ref()
            .and_then(|u| self.attempt.cost(u, self.stream.cost_usd()));
        self.attempt.event(
            usage.as_ref(),
            cost,
            self.stream.time_to_first_token(),
            outcome,
        )
    }

    async fn finish(&mut self, outcome: UsageOutcome) {
        self.recorded = true;
        let event = self.event(outcome);
        self.usage_event = self.service.record(event).await;
    }

    /// The underlying stream (provider, usage, time to first token).
    pub fn inner(&self) -> &ChatStream {
        &self.stream
    }

    /// The config serving the stream.
    pub fn config_id(&self) -> i64 {
        self.attempt.config_id
    }

    /// The model answering.
    pub fn model(&self) -> &str {
        &self.attempt.model
    }

    /// Exact cost of the reported usage, at the config's prices when it
    /// has its own.
    pub fn cost_usd(&self) -> Option<Decimal> {
        self.stream
            .usage()
            .as_ref()
            .and_then(|u| self.attempt.cost(u, self.stream.cost_usd()))
    }

    /// The usage row, once the stream has ended.
    pub fn usage_event(&self) -> Option<i64> {
        self.usage_event
    }
}

impl Drop for AgentStream {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let event = self.event(UsageOutcome::Error("cancelled".to_owned()));
        let store = self.service.store.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(err) = store.record_usage(event).await {
                        tracing::error!(error = %err, "could not record a usage event");
                    }
                });
            }
            Err(_) => tracing::error!("stream dropped outside a tokio runtime: usage not recorded"),
        }
    }
}
