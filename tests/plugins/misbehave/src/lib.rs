//! A provider plugin that misbehaves on request, for the host's tests.
//! The request's model selects the behaviour:
//!
//! - `spin`: loops forever (the CPU limit must stop it);
//! - `hog`: allocates without bound (the memory limit must stop it);
//! - `panic`: panics (a trap);
//! - `panic-next`: starts a stream, then panics in its `next`;
//! - `fetch`: GETs the URL given as the last message's text and answers
//!   with the status (the HTTP gate decides whether it may);
//! - `fetch-loop`: GETs that URL 100 times (the request limit must stop
//!   it);
//! - anything else: answers `ok` without any I/O.

#[path = "../../canned.rs"]
mod canned;

use llmhost_provider_sdk::http::{self, Request};
use llmhost_provider_sdk::types::{
    ChatRequest, ChatResponse, Chunk, HealthReport, ProviderConfig, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use llmhost_provider_sdk::{ChunkSource, Provider, export_provider, message_text};
use std::hint::black_box;

struct Misbehave;

fn behave(request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
    match request.model.as_str() {
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        "panic" => panic!("this plugin panics on request"),
        "fetch" => {
            let url = request
                .messages
                .last()
                .map(message_text)
                .unwrap_or_default();
            let mut response = http::send(Request::get(url))?;
            let _ = response.body.read_to_end(1 << 20)?;
            Ok(canned::answer(
                "misbehave-1",
                format!("status {}", response.status),
            ))
        }
        "fetch-loop" => {
            let url = request
                .messages
                .last()
                .map(message_text)
                .unwrap_or_default();
            for _ in 0..100 {
                let mut response = http::send(Request::get(url.clone()))?;
                let _ = response.body.read_to_end(1 << 20)?;
            }
            Ok(canned::answer("misbehave-1", "sent 100".into()))
        }
        _ => Ok(canned::answer("misbehave-1", "ok".into())),
    }
}

/// A stream whose first `next` panics.
struct PanicNext;

impl ChunkSource for PanicNext {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ProviderError> {
        panic!("this plugin panics in the middle of a stream")
    }
}

impl Provider for Misbehave {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "misbehave".into(),
            name: "Misbehaving test plugin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_base_url: "https://misbehave.invalid".into(),
            api_key_env: vec!["MISBEHAVE_API_KEY".into()],
            base_url_env: Vec::new(),
            hosts: vec!["misbehave.invalid".into()],
            models: [
                "ok",
                "spin",
                "hog",
                "panic",
                "panic-next",
                "fetch",
                "fetch-loop",
            ]
            .into_iter()
            .map(canned::model)
            .collect(),
        }
    }

    fn chat(_config: ProviderConfig, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        behave(&request)
    }

    fn stream(
        _config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Box<dyn ChunkSource>, ProviderError> {
        if request.model == "panic-next" {
            return Ok(Box::new(PanicNext));
        }
        let response = behave(&request)?;
        Ok(Box::new(canned::Once(Some(Chunk::Text(response.content)))))
    }

    fn count_tokens(
        _config: ProviderConfig,
        _model: String,
        _input: TokenInput,
    ) -> Result<TokenCount, ProviderError> {
        Ok(canned::no_count())
    }

    fn health_check(_config: ProviderConfig) -> Result<HealthReport, ProviderError> {
        Ok(canned::fine())
    }
}

export_provider!(Misbehave);
