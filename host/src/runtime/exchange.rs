//! Contract 0.2 calls: the plugin prepares each request and parses each
//! answer; the host sends the requests itself ([`super::outbound`]), with
//! the key added at send time, and feeds streamed bodies to the plugin's
//! decoder, framed by the host's SSE framer ([`super::sse`]).

use super::bindings::v0_2;
use super::outbound::{self, Auth, OutboundBody, OutboundError, OutboundRequest};
use super::sse::SseFramer;
use super::{CallConfig, Instance, convert};
use crate::error::Error;
use crate::types::{
    self as h, AuthScheme, ChatRequest, ChatResponse, Chunk, HealthReport, ProviderError,
    ProviderInfo, StreamFormat, TokenCount, TokenInput, TransportDetail, TransportPhase,
};
use std::collections::VecDeque;
use v0_2::exports::llmhost::provider::provider::Guest;
use v0_2::llmhost::provider::types as g;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

/// Most bytes of one event or line the framer holds while it is
/// incomplete: a vendor never sends one this large.
const MAX_SSE_EVENT_BYTES: usize = 16 << 20;

impl Instance {
    /// The 0.2 exports and the store, borrowed apart.
    fn v0_2(&mut self) -> Result<(&Guest, &mut Store<super::RequestState>), Error> {
        match &self.bindings {
            Some(super::Bindings::V0_2(bindings)) => {
                Ok((bindings.llmhost_provider_provider(), &mut self.store))
            }
            _ => Err(Self::not_initialised()),
        }
    }

    /// Turns a 0.2 call's outcome into the host's result type.
    fn settle<T>(&self, result: wasmtime::Result<Result<T, g::ProviderError>>) -> Result<T, Error> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Error::Provider {
                provider: self.provider.clone(),
                error: Box::new(error.into()),
            }),
            Err(err) => Err(self.trap_error(err)),
        }
    }

    /// What the plugin may know of the call.
    fn config_v0_2(&self, config: &CallConfig) -> g::ProviderConfig {
        g::ProviderConfig {
            base_url: config.base_url.clone(),
            key_configured: config.api_key.is_some(),
            api_key: if self.auth.plugin_sees_key() {
                config.key_for_plugin()
            } else {
                None
            },
            request_id: config.request_id.clone(),
            idempotency_key: config.idempotency_key.clone(),
        }
    }

    fn provider_error(&self, error: ProviderError) -> Error {
        Error::Provider {
            provider: self.provider.clone(),
            error: Box::new(error),
        }
    }

    /// Sends one prepared request and waits for the response head.
    async fn send(
        &mut self,
        config: &CallConfig,
        request: g::HttpRequest,
    ) -> Result<outbound::OutboundResponse, Error> {
        if self.sent >= self.limits.max_outbound_requests {
            return Err(Error::RequestLimitExceeded {
                provider: self.provider.clone(),
                limit: self.limits.max_outbound_requests,
            });
        }
        self.sent += 1;
        let auth = match (&self.auth, config.api_key.clone()) {
            (AuthScheme::Bearer, Some(key)) => Ok(Auth::Bearer(key)),
            (AuthScheme::Header(name), Some(key)) => Ok(Auth::Header(name.clone(), key)),
            (AuthScheme::Query(name), Some(key)) => Ok(Auth::Query(name.clone(), key)),
            (AuthScheme::None | AuthScheme::PluginSigns, _) => Ok(Auth::None),
            (_, None) if self.key_optional => Ok(Auth::None),
            (_, None) => Err(()),
        }
        .map_err(|()| {
            self.provider_error(ProviderError::ApiKeyMissing(format!(
                "no API key configured for {}",
                self.provider
            )))
        })?;
        let method = match request.method {
            g::Method::Get => http::Method::GET,
            g::Method::Post => http::Method::POST,
            g::Method::Put => http::Method::PUT,
            g::Method::Patch => http::Method::PATCH,
            g::Method::Delete => http::Method::DELETE,
        };
        let outgoing = OutboundRequest {
            method,
            base_url: config.base_url.clone(),
            path: request.path,
            headers: request.headers,
            extra_headers: config.extra_headers.clone(),
            auth,
            request_id: config.request_id.clone(),
            body: request.body.into(),
        };
        outbound::send(&self.clients, &self.approval, outgoing, config.timeout)
            .await
            .map_err(|err| self.outbound_error(err))
    }

    /// Sends one prepared request and reads the whole answer.
    async fn exchange(
        &mut self,
        config: &CallConfig,
        request: g::HttpRequest,
    ) -> Result<g::HttpResponse, Error> {
        let response = self.send(config, request).await?;
        let body = response
            .body
            .collect(self.limits.max_response_bytes)
            .await
            .map_err(|err| self.outbound_error(err))?;
        Ok(g::HttpResponse {
            status: response.status,
            headers: response.headers,
            body: body.to_vec(),
        })
    }

    fn outbound_error(&self, error: OutboundError) -> Error {
        let detail = |message: String, phase: outbound::Phase, elapsed: Option<u64>| {
            let mut detail = TransportDetail::new(message, phase_of(phase));
            detail.elapsed_ms = elapsed;
            detail
        };
        match error {
            OutboundError::Denied { destination } => Error::HostDenied {
                provider: self.provider.clone(),
                destination,
                approved: self.store.data().gate.approval_text(),
            },
            OutboundError::Timeout { phase, elapsed } => {
                self.provider_error(ProviderError::Timeout(detail(
                    format!("no answer within {:.1}s", elapsed.as_secs_f64()),
                    phase,
                    Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
                )))
            }
            OutboundError::Network { phase, message } => {
                self.provider_error(ProviderError::Network(detail(message, phase, None)))
            }
            OutboundError::TooLarge { limit } => Error::ResponseTooLarge {
                provider: self.provider.clone(),
                limit_bytes: limit,
            },
            OutboundError::InvalidRequest(message) => self.provider_error(ProviderError::Protocol(
                format!("the plugin prepared an invalid request: {message}"),
            )),
        }
    }
}

fn phase_of(phase: outbound::Phase) -> TransportPhase {
    match phase {
        outbound::Phase::Connect => TransportPhase::Connect,
        outbound::Phase::Request => TransportPhase::Request,
        outbound::Phase::Body => TransportPhase::Body,
    }
}

/// The plugin's manifest.
pub(super) async fn info(instance: &mut Instance) -> Result<ProviderInfo, Error> {
    let (guest, store) = instance.v0_2()?;
    let result = guest.call_info(store).await;
    let info = instance.settle(result.map(Ok))?;
    Ok(convert::v0_2::provider_info(info))
}

/// Prepare, then send and parse until the plugin is done.
pub(super) async fn chat(
    instance: &mut Instance,
    config: &CallConfig,
    request: &ChatRequest,
) -> Result<ChatResponse, Error> {
    let guest_config = instance.config_v0_2(config);
    let guest_request = convert::v0_2::chat_request(request);
    let (guest, store) = instance.v0_2()?;
    let prepared = guest
        .call_prepare_chat(store, &guest_config, &guest_request)
        .await;
    let mut next = instance.settle(prepared)?;
    loop {
        let response = instance.exchange(config, next).await?;
        let (guest, store) = instance.v0_2()?;
        let parsed = guest.call_parse_chat(store, &response).await;
        match instance.settle(parsed)? {
            g::ChatStep::Done(answer) => return Ok(answer.into()),
            g::ChatStep::Send(request) => next = request,
        }
    }
}

/// Token count: locally by the plugin, or by asking the vendor.
pub(super) async fn count_tokens(
    instance: &mut Instance,
    config: &CallConfig,
    model: &str,
    input: &TokenInput,
) -> Result<TokenCount, Error> {
    let guest_config = instance.config_v0_2(config);
    let guest_input: g::TokenInput = input.into();
    let (guest, store) = instance.v0_2()?;
    let prepared = guest
        .call_prepare_count_tokens(store, &guest_config, model, &guest_input)
        .await;
    let mut step = instance.settle(prepared)?;
    loop {
        match step {
            g::CountStep::Done(count) => return Ok(count.into()),
            g::CountStep::Send(request) => {
                let response = instance.exchange(config, request).await?;
                let (guest, store) = instance.v0_2()?;
                let parsed = guest.call_parse_count_tokens(store, &response).await;
                step = instance.settle(parsed)?;
            }
        }
    }
}

/// Health check.
pub(super) async fn health_check(
    instance: &mut Instance,
    config: &CallConfig,
) -> Result<HealthReport, Error> {
    let guest_config = instance.config_v0_2(config);
    let (guest, store) = instance.v0_2()?;
    let prepared = guest.call_prepare_health_check(store, &guest_config).await;
    let mut next = instance.settle(prepared)?;
    loop {
        let response = instance.exchange(config, next).await?;
        let (guest, store) = instance.v0_2()?;
        let parsed = guest.call_parse_health_check(store, &response).await;
        match instance.settle(parsed)? {
            g::HealthStep::Done(report) => return Ok(report.into()),
            g::HealthStep::Send(request) => next = request,
        }
    }
}

/// A 0.2 stream: the body the host reads, the framer, the plugin's
/// decoder and the chunks decoded but not yet taken.
pub(crate) struct Stream {
    decoder: ResourceAny,
    body: OutboundBody,
    framer: Option<SseFramer>,
    pending: VecDeque<Chunk>,
    done: bool,
}

/// Prepares and sends the request, then opens the plugin's decoder on the
/// answer's head (or lets the plugin map an error status).
pub(super) async fn start_stream(
    instance: &mut Instance,
    config: &CallConfig,
    request: &ChatRequest,
) -> Result<Stream, Error> {
    let guest_config = instance.config_v0_2(config);
    let guest_request = convert::v0_2::chat_request(request);
    let (guest, store) = instance.v0_2()?;
    let prepared = guest
        .call_prepare_stream(store, &guest_config, &guest_request)
        .await;
    let prepared = instance.settle(prepared)?;
    let response = instance.send(config, prepared).await?;
    let status = response.status;
    let success = (200..300).contains(&status);
    let (head, body) = if success {
        let head = g::HttpResponse {
            status,
            headers: response.headers,
            body: Vec::new(),
        };
        (head, Some(response.body))
    } else {
        let body = response
            .body
            .collect(instance.limits.max_response_bytes)
            .await
            .map_err(|err| instance.outbound_error(err))?;
        let head = g::HttpResponse {
            status,
            headers: response.headers,
            body: body.to_vec(),
        };
        (head, None)
    };
    let (guest, store) = instance.v0_2()?;
    let opened = guest.call_open_stream(store, &head).await;
    let decoder = instance.settle(opened)?;
    let Some(body) = body else {
        return Err(instance.provider_error(ProviderError::Protocol(format!(
            "the plugin opened a stream on an HTTP {status} answer instead of reporting its error"
        ))));
    };
    Ok(Stream {
        decoder,
        body,
        framer: (instance.stream_format == StreamFormat::Sse)
            .then(|| SseFramer::new(MAX_SSE_EVENT_BYTES)),
        pending: VecDeque::new(),
        done: false,
    })
}

/// The next chunk: from what was decoded, else from the next read of the
/// body fed to the decoder, else `None` once the decoder finished.
pub(super) async fn next_chunk(
    instance: &mut Instance,
    stream: &mut Stream,
) -> Result<Option<Chunk>, Error> {
    loop {
        if let Some(chunk) = stream.pending.pop_front() {
            return Ok(Some(chunk));
        }
        if stream.done {
            return Ok(None);
        }
        let read = stream.body.next_chunk().await;
        let read = match read {
            Ok(read) => read,
            Err(err) => {
                stream.done = true;
                return Err(instance.outbound_error(err));
            }
        };
        let decoded = match read {
            Some(bytes) => {
                let input = match &mut stream.framer {
                    Some(framer) => {
                        if let Err(err) = framer.feed(&bytes) {
                            stream.done = true;
                            return Err(
                                instance.provider_error(ProviderError::Protocol(err.to_string()))
                            );
                        }
                        let mut events = Vec::new();
                        while let Some(event) = framer.next_event() {
                            events.push(g::SseEvent {
                                event: event.event,
                                data: event.data,
                                id: event.id,
                            });
                        }
                        if events.is_empty() {
                            continue;
                        }
                        g::StreamInput::Events(events)
                    }
                    None => g::StreamInput::Bytes(bytes.to_vec()),
                };
                let decoder = stream.decoder;
                let (guest, store) = instance.v0_2()?;
                let result = guest
                    .stream_decoder()
                    .call_feed(store, decoder, &input)
                    .await;
                instance.settle(result)
            }
            None => {
                stream.done = true;
                if stream
                    .framer
                    .as_ref()
                    .is_some_and(SseFramer::has_partial_event)
                {
                    tracing::debug!(
                        provider = %instance.provider,
                        "the stream body ended inside an event; the partial event is dropped"
                    );
                }
                let decoder = stream.decoder;
                let (guest, store) = instance.v0_2()?;
                let result = guest.stream_decoder().call_finish(store, decoder).await;
                instance.settle(result)
            }
        };
        match decoded {
            Ok(chunks) => stream
                .pending
                .extend(chunks.into_iter().map(h::Chunk::from)),
            Err(err) => {
                stream.done = true;
                return Err(err);
            }
        }
    }
}
