//! What the test plugins share: a model entry, a canned answer, a
//! one-chunk stream and the no-I/O token count and health check. Included
//! by each test plugin crate (`#[path]`), since they are separate
//! components with nothing else in common.

use llmhost_provider_sdk::ChunkSource;
use llmhost_provider_sdk::types::{
    Capabilities, ChatResponse, Chunk, ContentPart, FinishReason, HealthReport, ModelInfo, Pricing,
    ProviderError, TokenCount, Usage,
};

/// A model with fixed limits and prices ($1 / $2 per million tokens).
pub fn model(id: &str) -> ModelInfo {
    ModelInfo {
        id: id.into(),
        display_name: id.into(),
        context_window: 1000,
        max_output_tokens: 100,
        pricing: Pricing {
            input: 1_000_000,
            output: 2_000_000,
            cache_read: None,
            cache_write: None,
        },
        capabilities: Capabilities::STREAMING,
        tokenizer: "o200k_base".into(),
        tokenizer_exact: false,
    }
}

/// A complete answer holding `content`, one token each way.
pub fn answer(id: &str, content: String) -> ChatResponse {
    ChatResponse {
        id: id.into(),
        model: "ok".into(),
        parts: vec![ContentPart::Text(content.clone())],
        content,
        reasoning_content: None,
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: Usage {
            input_tokens: 1,
            output_tokens: 1,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            estimated: false,
        },
        rate_limits: None,
        request_id: None,
    }
}

/// A stream of one chunk.
pub struct Once(pub Option<Chunk>);

impl ChunkSource for Once {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ProviderError> {
        Ok(self.0.take())
    }
}

/// A token count of nothing, flagged as an estimate.
pub fn no_count() -> TokenCount {
    TokenCount {
        tokens: 0,
        estimated: true,
        encoding: "none".into(),
    }
}

/// A health report that says all is well.
pub fn fine() -> HealthReport {
    HealthReport {
        models_available: None,
        detail: "fine".into(),
    }
}
