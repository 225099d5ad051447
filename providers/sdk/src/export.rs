//! What [`export_provider!`](crate::export_provider) expands to: the
//! contract's exports over a [`Provider`], keeping what each `prepare-*`
//! was given until the matching `parse-*` or `open-stream`.
//!
//! One instance serves one call, so one slot holds the call's state. A
//! `parse-*` that finds no state of its kind (no prepare, or the prepare
//! of another operation) is a `protocol` error, never a panic. The state
//! stays while a parse answers `send` (the exchange goes on) and is
//! dropped once it answers `done` or an error.

use crate::bindings::exports::llmhost::provider::provider::GuestStreamDecoder;
use crate::types::{
    ChatRequest, ChatStep, Chunk, CountStep, HealthStep, HttpRequest, HttpResponse, ProviderConfig,
    ProviderError, StreamInput, TokenInput,
};
use crate::{Provider, StreamDecode};
use std::cell::RefCell;

/// What the current call prepared.
enum Prepared {
    Chat(ChatRequest),
    Stream(ChatRequest),
    Count { model: String, input: TokenInput },
    Health,
}

thread_local! {
    static PREPARED: RefCell<Option<Prepared>> = const { RefCell::new(None) };
}

fn keep(prepared: Option<Prepared>) {
    PREPARED.with(|slot| *slot.borrow_mut() = prepared);
}

fn take() -> Option<Prepared> {
    PREPARED.with(|slot| slot.borrow_mut().take())
}

fn unprepared(parse: &str, prepare: &str) -> ProviderError {
    ProviderError::Protocol(format!(
        "{parse} was called without a {prepare} before it in this call"
    ))
}

/// `prepare-chat`: keeps the request for [`parse_chat`].
pub fn prepare_chat<P: Provider>(
    config: ProviderConfig,
    request: ChatRequest,
) -> Result<HttpRequest, ProviderError> {
    let prepared = P::prepare_chat(&config, &request);
    keep(prepared.is_ok().then_some(Prepared::Chat(request)));
    prepared
}

/// `parse-chat`: parses with the request [`prepare_chat`] kept.
pub fn parse_chat<P: Provider>(response: HttpResponse) -> Result<ChatStep, ProviderError> {
    let Some(Prepared::Chat(request)) = take() else {
        return Err(unprepared("parse-chat", "prepare-chat"));
    };
    let step = P::parse_chat(&request, response);
    if let Ok(ChatStep::Send(_)) = step {
        keep(Some(Prepared::Chat(request)));
    }
    step
}

/// `prepare-stream`: keeps the request for [`open_stream`].
pub fn prepare_stream<P: Provider>(
    config: ProviderConfig,
    request: ChatRequest,
) -> Result<HttpRequest, ProviderError> {
    let prepared = P::prepare_stream(&config, &request);
    keep(prepared.is_ok().then_some(Prepared::Stream(request)));
    prepared
}

/// `open-stream`: opens the decoder with the request [`prepare_stream`]
/// kept.
pub fn open_stream<P: Provider>(
    response: HttpResponse,
) -> Result<Box<dyn StreamDecode>, ProviderError> {
    let Some(Prepared::Stream(request)) = take() else {
        return Err(unprepared("open-stream", "prepare-stream"));
    };
    P::open_stream(&request, response)
}

/// `prepare-count-tokens`: keeps the model and input for
/// [`parse_count_tokens`] when the plugin asks the vendor.
pub fn prepare_count_tokens<P: Provider>(
    config: ProviderConfig,
    model: String,
    input: TokenInput,
) -> Result<CountStep, ProviderError> {
    let step = P::prepare_count_tokens(&config, &model, &input);
    let sends = matches!(step, Ok(CountStep::Send(_)));
    keep(sends.then_some(Prepared::Count { model, input }));
    step
}

/// `parse-count-tokens`: parses with the model and input
/// [`prepare_count_tokens`] kept.
pub fn parse_count_tokens<P: Provider>(response: HttpResponse) -> Result<CountStep, ProviderError> {
    let Some(Prepared::Count { model, input }) = take() else {
        return Err(unprepared("parse-count-tokens", "prepare-count-tokens"));
    };
    let step = P::parse_count_tokens(&model, &input, response);
    if let Ok(CountStep::Send(_)) = step {
        keep(Some(Prepared::Count { model, input }));
    }
    step
}

/// `prepare-health-check`.
pub fn prepare_health_check<P: Provider>(
    config: ProviderConfig,
) -> Result<HttpRequest, ProviderError> {
    let prepared = P::prepare_health_check(&config);
    keep(prepared.is_ok().then_some(Prepared::Health));
    prepared
}

/// `parse-health-check`.
pub fn parse_health_check<P: Provider>(
    response: HttpResponse,
) -> Result<HealthStep, ProviderError> {
    let Some(Prepared::Health) = take() else {
        return Err(unprepared("parse-health-check", "prepare-health-check"));
    };
    let step = P::parse_health_check(response);
    if let Ok(HealthStep::Send(_)) = step {
        keep(Some(Prepared::Health));
    }
    step
}

/// The `stream-decoder` resource handed to the host; wraps a
/// [`StreamDecode`].
pub struct Decoder(RefCell<Box<dyn StreamDecode>>);

impl Decoder {
    /// Wraps a decoder.
    pub fn new(decoder: Box<dyn StreamDecode>) -> Self {
        Self(RefCell::new(decoder))
    }
}

impl GuestStreamDecoder for Decoder {
    fn feed(&self, input: StreamInput) -> Result<Vec<Chunk>, ProviderError> {
        match self.0.try_borrow_mut() {
            Ok(mut decoder) => decoder.feed(input),
            Err(_) => Err(busy()),
        }
    }

    fn finish(&self) -> Result<Vec<Chunk>, ProviderError> {
        match self.0.try_borrow_mut() {
            Ok(mut decoder) => decoder.finish(),
            Err(_) => Err(busy()),
        }
    }
}

/// A decoder re-entered while it runs: the component model forbids it,
/// so this never happens, but it must not panic if it did.
fn busy() -> ProviderError {
    ProviderError::Protocol("the stream decoder was called while it was running".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        ChatResponse, FinishReason, HealthReport, Method, ProviderInfo, TokenCount, Usage,
    };

    /// A two-step vendor: the chat first fetches `/token`, then answers with
    /// what the request asked and what it was sent; counts go to the vendor.
    struct TwoStep;

    fn request_to(path: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn answer(content: String) -> ChatResponse {
        ChatResponse {
            id: "a".into(),
            model: "m".into(),
            content,
            reasoning_content: None,
            tool_calls: Vec::new(),
            parts: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 1,
                output_tokens: 1,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                cache_write_hour_tokens: 0,
                reasoning_tokens: 0,
                estimated: false,
            },
            rate_limits: None,
            request_id: None,
        }
    }

    struct Echo;

    impl StreamDecode for Echo {
        fn feed(&mut self, _input: StreamInput) -> Result<Vec<Chunk>, ProviderError> {
            Ok(vec![Chunk::Text("fed".into())])
        }
        fn finish(&mut self) -> Result<Vec<Chunk>, ProviderError> {
            Ok(Vec::new())
        }
    }

    impl Provider for TwoStep {
        fn info() -> ProviderInfo {
            unreachable!("not called by these tests")
        }
        fn prepare_chat(
            _config: &ProviderConfig,
            request: &ChatRequest,
        ) -> Result<HttpRequest, ProviderError> {
            if request.model.is_empty() {
                return Err(ProviderError::InvalidRequest(crate::detail("no model")));
            }
            Ok(request_to("/token"))
        }
        fn parse_chat(
            request: &ChatRequest,
            response: HttpResponse,
        ) -> Result<ChatStep, ProviderError> {
            Ok(match response.status {
                100 => ChatStep::Send(request_to("/chat")),
                _ => ChatStep::Done(answer(format!("{} {}", request.model, response.status))),
            })
        }
        fn prepare_stream(
            _config: &ProviderConfig,
            _request: &ChatRequest,
        ) -> Result<HttpRequest, ProviderError> {
            Ok(request_to("/stream"))
        }
        fn open_stream(
            request: &ChatRequest,
            _response: HttpResponse,
        ) -> Result<Box<dyn StreamDecode>, ProviderError> {
            assert_eq!(request.model, "m");
            Ok(Box::new(Echo))
        }
        fn prepare_count_tokens(
            _config: &ProviderConfig,
            model: &str,
            _input: &TokenInput,
        ) -> Result<CountStep, ProviderError> {
            Ok(if model == "local" {
                CountStep::Done(count(1))
            } else {
                CountStep::Send(request_to("/count"))
            })
        }
        fn parse_count_tokens(
            model: &str,
            input: &TokenInput,
            response: HttpResponse,
        ) -> Result<CountStep, ProviderError> {
            let TokenInput::Text(text) = input else {
                return Err(ProviderError::Protocol("text expected".into()));
            };
            assert_eq!(model, "remote");
            Ok(CountStep::Done(count(
                text.len() as u32 + u32::from(response.status),
            )))
        }
        fn prepare_health_check(_config: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
            Ok(request_to("/health"))
        }
        fn parse_health_check(_response: HttpResponse) -> Result<HealthStep, ProviderError> {
            Ok(HealthStep::Done(HealthReport {
                models_available: None,
                detail: "up".into(),
            }))
        }
    }

    fn count(tokens: u32) -> TokenCount {
        TokenCount {
            tokens,
            estimated: false,
            encoding: "o200k_base".into(),
        }
    }

    fn config() -> ProviderConfig {
        ProviderConfig {
            base_url: "https://api.example".into(),
            key_configured: true,
            api_key: None,
            request_id: "r".into(),
            idempotency_key: "i".into(),
        }
    }

    fn chat_request(model: &str) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: Vec::new(),
            temperature: None,
            max_tokens: None,
            top_p: None,
            stop: Vec::new(),
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            reasoning: None,
            user: None,
            vendor_params: None,
        }
    }

    fn status(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn is_protocol<T>(result: Result<T, ProviderError>) -> bool {
        matches!(result, Err(ProviderError::Protocol(_)))
    }

    #[test]
    fn the_request_is_kept_through_every_step_of_a_chat() {
        let sent = prepare_chat::<TwoStep>(config(), chat_request("m")).expect("prepares");
        assert_eq!(sent.path, "/token");
        let Ok(ChatStep::Send(next)) = parse_chat::<TwoStep>(status(100)) else {
            panic!("expected a second step");
        };
        assert_eq!(next.path, "/chat");
        let Ok(ChatStep::Done(done)) = parse_chat::<TwoStep>(status(200)) else {
            panic!("expected the answer");
        };
        assert_eq!(done.content, "m 200");
        assert!(
            is_protocol(parse_chat::<TwoStep>(status(200))),
            "the call is over"
        );
    }

    #[test]
    fn a_parse_without_its_prepare_is_a_protocol_error() {
        assert!(is_protocol(parse_chat::<TwoStep>(status(200))));
        assert!(is_protocol(open_stream::<TwoStep>(status(200))));
        assert!(is_protocol(parse_count_tokens::<TwoStep>(status(200))));
        assert!(is_protocol(parse_health_check::<TwoStep>(status(200))));
        prepare_stream::<TwoStep>(config(), chat_request("m")).expect("prepares");
        assert!(
            is_protocol(parse_chat::<TwoStep>(status(200))),
            "a stream's request is not a chat's"
        );
        prepare_chat::<TwoStep>(config(), chat_request("")).expect_err("refused");
        assert!(is_protocol(parse_chat::<TwoStep>(status(200))));
    }

    #[test]
    fn a_stream_opens_with_its_request_and_decodes_through_the_resource() {
        prepare_stream::<TwoStep>(config(), chat_request("m")).expect("prepares");
        let decoder = Decoder::new(open_stream::<TwoStep>(status(200)).expect("opens"));
        let chunks = decoder.feed(StreamInput::Events(Vec::new()));
        assert_eq!(chunks, Ok(vec![Chunk::Text("fed".into())]));
        assert_eq!(decoder.finish(), Ok(Vec::new()));
        assert!(is_protocol(open_stream::<TwoStep>(status(200))));
    }

    #[test]
    fn a_count_sent_to_the_vendor_keeps_its_model_and_input() {
        let local =
            prepare_count_tokens::<TwoStep>(config(), "local".into(), TokenInput::Text("x".into()));
        assert!(matches!(local, Ok(CountStep::Done(c)) if c.tokens == 1));
        assert!(is_protocol(parse_count_tokens::<TwoStep>(status(200))));
        let sent = prepare_count_tokens::<TwoStep>(
            config(),
            "remote".into(),
            TokenInput::Text("four".into()),
        );
        assert!(matches!(sent, Ok(CountStep::Send(r)) if r.path == "/count"));
        let parsed = parse_count_tokens::<TwoStep>(status(200));
        assert!(matches!(parsed, Ok(CountStep::Done(c)) if c.tokens == 204));
    }

    #[test]
    fn a_health_check_parses_after_its_prepare() {
        prepare_health_check::<TwoStep>(config()).expect("prepares");
        assert!(matches!(
            parse_health_check::<TwoStep>(status(200)),
            Ok(HealthStep::Done(report)) if report.detail == "up"
        ));
    }

    #[test]
    fn the_default_count_parse_is_a_protocol_error() {
        struct Local;
        impl Provider for Local {
            fn info() -> ProviderInfo {
                unreachable!("not called")
            }
            fn prepare_chat(
                _: &ProviderConfig,
                _: &ChatRequest,
            ) -> Result<HttpRequest, ProviderError> {
                Ok(request_to("/"))
            }
            fn parse_chat(_: &ChatRequest, _: HttpResponse) -> Result<ChatStep, ProviderError> {
                Ok(ChatStep::Send(request_to("/")))
            }
            fn prepare_stream(
                _: &ProviderConfig,
                _: &ChatRequest,
            ) -> Result<HttpRequest, ProviderError> {
                Ok(request_to("/"))
            }
            fn open_stream(
                _: &ChatRequest,
                _: HttpResponse,
            ) -> Result<Box<dyn StreamDecode>, ProviderError> {
                Ok(Box::new(Echo))
            }
            fn prepare_count_tokens(
                _: &ProviderConfig,
                _: &str,
                _: &TokenInput,
            ) -> Result<CountStep, ProviderError> {
                Ok(CountStep::Send(request_to("/count")))
            }
            fn prepare_health_check(_: &ProviderConfig) -> Result<HttpRequest, ProviderError> {
                Ok(request_to("/"))
            }
            fn parse_health_check(_: HttpResponse) -> Result<HealthStep, ProviderError> {
                Ok(HealthStep::Send(request_to("/")))
            }
        }
        prepare_count_tokens::<Local>(config(), "m".into(), TokenInput::Text(String::new()))
            .expect("prepares");
        assert!(is_protocol(parse_count_tokens::<Local>(status(200))));
    }
}
