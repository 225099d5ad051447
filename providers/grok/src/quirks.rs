//! Where xAI's API differs from OpenAI's beyond what the core's `Dialect`
//! settings cover, each as one named function.

use llmhost_provider_sdk::StreamDecode;
use llmhost_provider_sdk::openai_compat::{self, Dialect, StreamDecoder};
use llmhost_provider_sdk::types::{ChatRequest, Chunk, ErrorDetail, ProviderError, StreamInput};
use serde_json::Value;

/// The request body: the core's, with [`fit_reasoning_effort`].
pub fn request_body(
    dialect: &Dialect,
    request: &ChatRequest,
    stream: bool,
) -> Result<Value, ProviderError> {
    let mut body = openai_compat::build_body(dialect, request, stream)?;
    fit_reasoning_effort(&mut body);
    Ok(body)
}

/// Whether `model` accepts `reasoning_effort`. xAI: "Only grok-3-mini
/// supports reasoning_effort"; grok-3, grok-4 and the grok-4-fast models
/// answer an error when it is present.
pub fn accepts_reasoning_effort(model: &str) -> bool {
    model.starts_with("grok-3-mini")
}

/// Fits the body's `reasoning_effort` to what its model accepts: dropped
/// where `reasoning_effort` is an error, and for grok-3-mini, which knows
/// only `low` and `high`, rounded to those (`minimal` to `low`, `medium`
/// to `high`: anything above the least thinking asks for more than `low`
/// gives). The request's `vendor-params` are merged after this, so a
/// caller can still send any effort on purpose.
pub fn fit_reasoning_effort(body: &mut Value) {
    let Some(body) = body.as_object_mut() else {
        return;
    };
    let accepts = body
        .get("model")
        .and_then(Value::as_str)
        .is_some_and(accepts_reasoning_effort);
    let Some(effort) = body.get("reasoning_effort").and_then(Value::as_str) else {
        return;
    };
    if !accepts {
        body.remove("reasoning_effort");
        return;
    }
    let fitted = match effort {
        "minimal" | "low" => "low",
        _ => "high",
    };
    body.insert("reasoning_effort".into(), Value::from(fitted));
}

/// Refines the core's error mapping with what xAI's messages tell. xAI's
/// error body is `{"code": "<status sentence>", "error": "<message>"}`,
/// and its statuses say less than its messages: a wrong key comes back as
/// 400 (sometimes 401 or 403), spent credits as 429 or 403.
pub fn refine_error(error: ProviderError) -> ProviderError {
    openai_compat::refine_error(error, |detail: &ErrorDetail| {
        let message = detail.message.to_ascii_lowercase();
        let says = |phrases: &[&str]| phrases.iter().any(|p| message.contains(p));
        if says(&["incorrect api key", "invalid api key"]) {
            Some(ProviderError::Authentication)
        } else if says(&[
            "used all available credits",
            "monthly spending limit",
            "credits or licenses",
            "run out of credits",
        ]) {
            Some(ProviderError::QuotaExhausted)
        } else if says(&["maximum prompt length", "maximum context length"]) {
            Some(ProviderError::TokenLimitExceeded)
        } else if message.contains("model") && says(&["does not exist", "not found"]) {
            Some(ProviderError::ModelNotSupported)
        } else {
            None
        }
    })
}

/// The core's stream decoder, with mid-stream errors refined by
/// [`refine_error`].
pub struct GrokDecoder(pub StreamDecoder);

impl StreamDecode for GrokDecoder {
    fn feed(&mut self, input: StreamInput) -> Result<Vec<Chunk>, ProviderError> {
        self.0.feed(input).map_err(refine_error)
    }

    fn finish(&mut self) -> Result<Vec<Chunk>, ProviderError> {
        self.0.finish().map_err(refine_error)
    }
}
