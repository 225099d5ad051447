//! A streamed answer, read chunk by chunk from its plugin instance.

use super::{ChatOutcome, Host, StreamCollector};
use crate::error::Error;
use crate::runtime::{Instance, StreamHandle};
use crate::types::{Chunk, FinishReason, Usage};
use llmhost_registry::rust_decimal::Decimal;
use std::time::{Duration, Instant, SystemTime};

/// A streamed answer in progress. Read it with [`ChatStream::next`] until
/// it returns `None`; then [`ChatStream::usage`] and
/// [`ChatStream::cost_usd`] hold the totals.
pub struct ChatStream {
    host: Host,
    instance: Option<Instance>,
    handle: StreamHandle,
    provider: String,
    model: String,
    timeout: Duration,
    started: Instant,
    /// When the request was made: the time its prices are chosen by.
    started_at: SystemTime,
    first_token: Option<Duration>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// Bytes of answer delivered so far, against `max_bytes`: a plugin
    /// may not grow a collected answer without bound.
    received: usize,
    max_bytes: usize,
}

impl ChatStream {
    pub(super) fn new(
        host: Host,
        instance: Instance,
        handle: StreamHandle,
        model: &str,
        timeout: Duration,
        (started, started_at): (Instant, SystemTime),
        max_bytes: usize,
    ) -> Self {
        let provider = instance.provider().to_owned();
        Self {
            host,
            instance: Some(instance),
            handle,
            provider,
            model: model.to_owned(),
            timeout,
            started,
            started_at,
            first_token: None,
            usage: None,
            finish: None,
            received: 0,
            max_bytes,
        }
    }

    /// The next chunk; `None` once the stream ended properly. After an
    /// error the stream is over and returns `None`.
    pub async fn next(&mut self) -> Option<Result<Chunk, Error>> {
        let instance = self.instance.as_mut()?;
        let step = tokio::time::timeout(self.timeout, instance.next_chunk(&mut self.handle)).await;
        let result = match step {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                provider: self.provider.clone(),
                after: self.timeout,
            }),
        };
        let result = result.and_then(|chunk| {
            self.received = self
                .received
                .saturating_add(chunk.as_ref().map_or(0, Chunk::answer_bytes));
            if self.received > self.max_bytes {
                return Err(Error::ResponseTooLarge {
                    provider: self.provider.clone(),
                    limit_bytes: self.max_bytes,
                });
            }
            Ok(chunk)
        });
        match result {
            Ok(Some(chunk)) => {
                match &chunk {
                    Chunk::Text(_) | Chunk::Reasoning(_) | Chunk::ToolCall(_) => {
                        self.first_token
                            .get_or_insert_with(|| self.started.elapsed());
                    }
                    Chunk::Usage(usage) => self.usage = Some(*usage),
                    Chunk::Finish(reason) => self.finish = Some(reason.clone()),
                    Chunk::Start(_)
                    | Chunk::ReasoningSignature(_)
                    | Chunk::RedactedReasoning(_) => {}
                }
                Some(Ok(chunk))
            }
            Ok(None) => {
                self.instance = None;
                None
            }
            Err(err) => {
                self.instance = None;
                Some(Err(err))
            }
        }
    }

    /// Reads the stream to its end and returns the whole answer, as
    /// [`Host::chat`] would. A plugin that reported no usage gets zero
    /// counts flagged as estimates.
    pub async fn collect(mut self) -> Result<ChatOutcome, Error> {
        let mut collector = StreamCollector::default();
        while let Some(chunk) = self.next().await {
            collector.add(chunk?);
        }
        let usage = self.usage.unwrap_or_else(Usage::unreported);
        Ok(ChatOutcome {
            provider: self.provider.clone(),
            response: collector.into_response(&self.model, usage),
            cost_usd: self.cost_usd(),
            latency: self.elapsed(),
        })
    }

    /// The provider answering.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The usage reported at the end of the stream.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Why the answer ended.
    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.finish.as_ref()
    }

    /// Exact cost of the reported usage; `None` before it arrived or for
    /// models not in the catalogue.
    pub fn cost_usd(&self) -> Option<Decimal> {
        self.usage.as_ref().and_then(|usage| {
            self.host
                .priced(&self.provider, &self.model, usage, self.started_at)
        })
    }

    /// The exact cost of `usage` on this stream's model at the time of its
    /// request: for estimates of a stream that reported none.
    pub(crate) fn price(&self, usage: &Usage) -> Option<Decimal> {
        self.host
            .priced(&self.provider, &self.model, usage, self.started_at)
    }

    /// Time from the request to the first content chunk.
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.first_token
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
