//! Where xAI's API differs from OpenAI's beyond what the core's `Dialect`
//! settings cover, each as one named function.

use llmhost_provider_sdk::ChunkSource;
use llmhost_provider_sdk::openai_compat::{self, CompatStream};
use llmhost_provider_sdk::types::{
    ChatRequest, Chunk, ErrorDetail, ProviderError, ReasoningEffort,
};

/// Whether `model` accepts `reasoning_effort`. xAI: "Only grok-3-mini
/// supports reasoning_effort"; grok-3, grok-4 and the grok-4-fast models
/// answer an error when it is present.
pub fn accepts_reasoning_effort(model: &str) -> bool {
    model.starts_with("grok-3-mini")
}

/// Fits the requested reasoning effort to what the model accepts: dropped
/// where `reasoning_effort` is an error, and for grok-3-mini, which knows
/// only `low` and `high`, rounded to those (`minimal` to `low`, `medium`
/// to `high`: anything above the least thinking asks for more than `low`
/// gives).
pub fn fit_reasoning_effort(mut request: ChatRequest) -> ChatRequest {
    let accepts = accepts_reasoning_effort(&request.model);
    if let Some(reasoning) = request.reasoning.as_mut() {
        reasoning.effort = match reasoning.effort {
            Some(_) if !accepts => None,
            Some(ReasoningEffort::Minimal | ReasoningEffort::Low) => Some(ReasoningEffort::Low),
            Some(ReasoningEffort::Medium | ReasoningEffort::High) => Some(ReasoningEffort::High),
            None => None,
        };
    }
    request
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

/// A streamed answer whose mid-stream errors go through [`refine_error`].
pub struct GrokStream(pub CompatStream);

impl ChunkSource for GrokStream {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ProviderError> {
        self.0.next_chunk().map_err(refine_error)
    }
}
