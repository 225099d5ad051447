//! Conversions between the host's types (`crate::types`) and each contract
//! version's generated bindings, at the plugin boundary. Requests go in by
//! reference (the host keeps its copy); answers come out by value.
//!
//! The records both versions share are converted by one macro expanded in
//! each version's module; what differs is written out beside it.

/// Conversions of the records every contract version has in the same
/// shape. Expanded in a module that names the version's types `g`.
macro_rules! shared_conversions {
    () => {
        use crate::types as h;

        impl From<h::Role> for g::Role {
            fn from(role: h::Role) -> Self {
                match role {
                    h::Role::System => g::Role::System,
                    h::Role::User => g::Role::User,
                    h::Role::Assistant => g::Role::Assistant,
                    h::Role::Tool => g::Role::Tool,
                }
            }
        }

        impl From<&h::ImageSource> for g::ImageSource {
            fn from(source: &h::ImageSource) -> Self {
                match source {
                    h::ImageSource::Base64(image) => g::ImageSource::Base64(g::Base64Image {
                        media_type: image.media_type.clone(),
                        data: image.data.clone(),
                    }),
                    h::ImageSource::Url(url) => g::ImageSource::Url(url.clone()),
                }
            }
        }

        impl From<g::ImageSource> for h::ImageSource {
            fn from(source: g::ImageSource) -> Self {
                match source {
                    g::ImageSource::Base64(image) => h::ImageSource::Base64(h::Base64Image {
                        media_type: image.media_type,
                        data: image.data,
                    }),
                    g::ImageSource::Url(url) => h::ImageSource::Url(url),
                }
            }
        }

        impl From<&h::ToolCall> for g::ToolCall {
            fn from(call: &h::ToolCall) -> Self {
                g::ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                }
            }
        }

        impl From<g::ToolCall> for h::ToolCall {
            fn from(call: g::ToolCall) -> Self {
                h::ToolCall {
                    id: call.id,
                    name: call.name,
                    arguments: call.arguments,
                }
            }
        }

        impl From<&h::ContentPart> for g::ContentPart {
            fn from(part: &h::ContentPart) -> Self {
                match part {
                    h::ContentPart::Text(text) => g::ContentPart::Text(text.clone()),
                    h::ContentPart::Image(source) => g::ContentPart::Image(source.into()),
                    h::ContentPart::ToolUse(call) => g::ContentPart::ToolUse(call.into()),
                    h::ContentPart::ToolResult(result) => {
                        g::ContentPart::ToolResult(g::ToolResult {
                            tool_call_id: result.tool_call_id.clone(),
                            content: result.content.clone(),
                            is_error: result.is_error,
                        })
                    }
                    h::ContentPart::Thinking(thinking) => g::ContentPart::Thinking(g::Thinking {
                        text: thinking.text.clone(),
                        signature: thinking.signature.clone(),
                    }),
                    h::ContentPart::RedactedThinking(data) => {
                        g::ContentPart::RedactedThinking(data.clone())
                    }
                }
            }
        }

        impl From<g::ContentPart> for h::ContentPart {
            fn from(part: g::ContentPart) -> Self {
                match part {
                    g::ContentPart::Text(text) => h::ContentPart::Text(text),
                    g::ContentPart::Image(source) => h::ContentPart::Image(source.into()),
                    g::ContentPart::ToolUse(call) => h::ContentPart::ToolUse(call.into()),
                    g::ContentPart::ToolResult(result) => {
                        h::ContentPart::ToolResult(h::ToolResult {
                            tool_call_id: result.tool_call_id,
                            content: result.content,
                            is_error: result.is_error,
                        })
                    }
                    g::ContentPart::Thinking(thinking) => h::ContentPart::Thinking(h::Thinking {
                        text: thinking.text,
                        signature: thinking.signature,
                    }),
                    g::ContentPart::RedactedThinking(data) => {
                        h::ContentPart::RedactedThinking(data)
                    }
                }
            }
        }

        impl From<&h::Message> for g::Message {
            fn from(message: &h::Message) -> Self {
                g::Message {
                    role: message.role.into(),
                    content: message.content.iter().map(Into::into).collect(),
                    name: message.name.clone(),
                    cache_breakpoint: message.cache_breakpoint,
                }
            }
        }

        fn tool_choice(choice: &h::ToolChoice) -> g::ToolChoice {
            match choice {
                h::ToolChoice::Auto => g::ToolChoice::Auto,
                h::ToolChoice::Required => g::ToolChoice::Required,
                h::ToolChoice::None => g::ToolChoice::None,
                h::ToolChoice::Named(name) => g::ToolChoice::Named(name.clone()),
            }
        }

        fn response_format(format: &h::ResponseFormat) -> g::ResponseFormat {
            match format {
                h::ResponseFormat::Text => g::ResponseFormat::Text,
                h::ResponseFormat::JsonObject => g::ResponseFormat::JsonObject,
                h::ResponseFormat::JsonSchema(schema) => {
                    g::ResponseFormat::JsonSchema(g::JsonSchemaFormat {
                        name: schema.name.clone(),
                        schema: schema.schema.clone(),
                        strict: schema.strict,
                    })
                }
            }
        }

        fn reasoning(config: &h::ReasoningConfig) -> g::ReasoningConfig {
            g::ReasoningConfig {
                budget_tokens: config.budget_tokens,
                effort: config.effort.map(|effort| match effort {
                    h::ReasoningEffort::Minimal => g::ReasoningEffort::Minimal,
                    h::ReasoningEffort::Low => g::ReasoningEffort::Low,
                    h::ReasoningEffort::Medium => g::ReasoningEffort::Medium,
                    h::ReasoningEffort::High => g::ReasoningEffort::High,
                }),
            }
        }

        fn tools(request: &h::ChatRequest) -> Vec<g::ToolDefinition> {
            request
                .tools
                .iter()
                .map(|tool| g::ToolDefinition {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    input_schema: tool.input_schema.clone(),
                })
                .collect()
        }

        impl From<&h::TokenInput> for g::TokenInput {
            fn from(input: &h::TokenInput) -> Self {
                match input {
                    h::TokenInput::Text(text) => g::TokenInput::Text(text.clone()),
                    h::TokenInput::Messages(messages) => {
                        g::TokenInput::Messages(messages.iter().map(Into::into).collect())
                    }
                }
            }
        }

        impl From<g::FinishReason> for h::FinishReason {
            fn from(reason: g::FinishReason) -> Self {
                match reason {
                    g::FinishReason::Stop => h::FinishReason::Stop,
                    g::FinishReason::Length => h::FinishReason::Length,
                    g::FinishReason::ToolCalls => h::FinishReason::ToolCalls,
                    g::FinishReason::ContentFilter => h::FinishReason::ContentFilter,
                    g::FinishReason::Refusal => h::FinishReason::Refusal,
                    g::FinishReason::Other(other) => h::FinishReason::Other(other),
                }
            }
        }

        impl From<g::RateLimits> for h::RateLimits {
            fn from(limits: g::RateLimits) -> Self {
                h::RateLimits {
                    requests_limit: limits.requests_limit,
                    requests_remaining: limits.requests_remaining,
                    requests_reset_ms: limits.requests_reset_ms,
                    tokens_limit: limits.tokens_limit,
                    tokens_remaining: limits.tokens_remaining,
                    tokens_reset_ms: limits.tokens_reset_ms,
                }
            }
        }

        impl From<g::ChatResponse> for h::ChatResponse {
            fn from(response: g::ChatResponse) -> Self {
                h::ChatResponse {
                    id: response.id,
                    model: response.model,
                    content: response.content,
                    reasoning_content: response.reasoning_content,
                    tool_calls: response.tool_calls.into_iter().map(Into::into).collect(),
                    parts: response.parts.into_iter().map(Into::into).collect(),
                    finish_reason: response.finish_reason.into(),
                    usage: response.usage.into(),
                    rate_limits: response.rate_limits.map(Into::into),
                    request_id: response.request_id,
                }
            }
        }

        impl From<g::Chunk> for h::Chunk {
            fn from(chunk: g::Chunk) -> Self {
                match chunk {
                    g::Chunk::Start(start) => h::Chunk::Start(h::StreamStart {
                        id: start.id,
                        model: start.model,
                        rate_limits: start.rate_limits.map(Into::into),
                        request_id: start.request_id,
                    }),
                    g::Chunk::Text(text) => h::Chunk::Text(text),
                    g::Chunk::Reasoning(text) => h::Chunk::Reasoning(text),
                    g::Chunk::ReasoningSignature(text) => h::Chunk::ReasoningSignature(text),
                    g::Chunk::RedactedReasoning(text) => h::Chunk::RedactedReasoning(text),
                    g::Chunk::ToolCall(delta) => h::Chunk::ToolCall(h::ToolCallDelta {
                        index: delta.index,
                        id: delta.id,
                        name: delta.name,
                        arguments: delta.arguments,
                    }),
                    g::Chunk::Usage(usage) => h::Chunk::Usage(usage.into()),
                    g::Chunk::Finish(reason) => h::Chunk::Finish(reason.into()),
                }
            }
        }

        impl From<g::TokenCount> for h::TokenCount {
            fn from(count: g::TokenCount) -> Self {
                h::TokenCount {
                    tokens: count.tokens,
                    estimated: count.estimated,
                    encoding: count.encoding,
                }
            }
        }

        impl From<g::HealthReport> for h::HealthReport {
            fn from(report: g::HealthReport) -> Self {
                h::HealthReport {
                    models_available: report.models_available,
                    detail: report.detail,
                }
            }
        }

        impl From<g::ErrorDetail> for h::ErrorDetail {
            fn from(detail: g::ErrorDetail) -> Self {
                h::ErrorDetail {
                    message: detail.message,
                    status: detail.status,
                    vendor_code: detail.vendor_code,
                    request_id: detail.request_id,
                    retry_after_ms: detail.retry_after_ms,
                }
            }
        }

        /// Every variant but the transport ones, which differ by version.
        fn vendor_error(error: g::ProviderError) -> Result<h::ProviderError, g::ProviderError> {
            Ok(match error {
                g::ProviderError::ApiKeyMissing(m) => h::ProviderError::ApiKeyMissing(m),
                g::ProviderError::Authentication(d) => h::ProviderError::Authentication(d.into()),
                g::ProviderError::RateLimited(d) => h::ProviderError::RateLimited(d.into()),
                g::ProviderError::QuotaExhausted(d) => h::ProviderError::QuotaExhausted(d.into()),
                g::ProviderError::TokenLimitExceeded(d) => {
                    h::ProviderError::TokenLimitExceeded(d.into())
                }
                g::ProviderError::ModelNotSupported(d) => {
                    h::ProviderError::ModelNotSupported(d.into())
                }
                g::ProviderError::InvalidRequest(d) => h::ProviderError::InvalidRequest(d.into()),
                g::ProviderError::Overloaded(d) => h::ProviderError::Overloaded(d.into()),
                g::ProviderError::ServerError(d) => h::ProviderError::ServerError(d.into()),
                g::ProviderError::Protocol(m) => h::ProviderError::Protocol(m),
                other => return Err(other),
            })
        }

        pub(super) fn model(model: g::ModelInfo) -> h::ModelInfo {
            h::ModelInfo {
                id: model.id,
                display_name: model.display_name,
                context_window: model.context_window,
                max_output_tokens: model.max_output_tokens,
                pricing: pricing(model.pricing),
                capabilities: capabilities(model.capabilities),
                tokenizer: model.tokenizer,
                tokenizer_exact: model.tokenizer_exact,
            }
        }

        pub(super) fn capabilities(flags: g::Capabilities) -> h::Capabilities {
            const FLAGS: [(g::Capabilities, h::Capabilities); 10] = [
                (g::Capabilities::STREAMING, h::Capabilities::STREAMING),
                (g::Capabilities::TOOLS, h::Capabilities::TOOLS),
                (
                    g::Capabilities::TOOL_CHOICE_REQUIRED,
                    h::Capabilities::TOOL_CHOICE_REQUIRED,
                ),
                (
                    g::Capabilities::TOOL_CHOICE_NONE,
                    h::Capabilities::TOOL_CHOICE_NONE,
                ),
                (g::Capabilities::VISION, h::Capabilities::VISION),
                (g::Capabilities::JSON_MODE, h::Capabilities::JSON_MODE),
                (g::Capabilities::JSON_SCHEMA, h::Capabilities::JSON_SCHEMA),
                (g::Capabilities::REASONING, h::Capabilities::REASONING),
                (g::Capabilities::PROMPT_CACHE, h::Capabilities::PROMPT_CACHE),
                (g::Capabilities::TEMPERATURE, h::Capabilities::TEMPERATURE),
            ];
            FLAGS
                .iter()
                .filter(|(guest, _)| flags.contains(*guest))
                .fold(h::Capabilities::empty(), |all, (_, host)| all | *host)
        }
    };
}

/// Contract 0.1.
pub(crate) mod v0_1 {
    use crate::runtime::bindings::v0_1::llmhost::provider::types as g;

    shared_conversions!();

    /// The request as a 0.1 plugin receives it. 0.1 has no
    /// `vendor-params`: the caller refuses requests that set it.
    pub(crate) fn chat_request(request: &h::ChatRequest) -> g::ChatRequest {
        g::ChatRequest {
            model: request.model.clone(),
            messages: request.messages.iter().map(Into::into).collect(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            top_p: request.top_p,
            stop: request.stop.clone(),
            tools: tools(request),
            tool_choice: request.tool_choice.as_ref().map(tool_choice),
            response_format: request.response_format.as_ref().map(response_format),
            reasoning: request.reasoning.as_ref().map(reasoning),
            user: request.user.clone(),
        }
    }

    impl From<g::Usage> for h::Usage {
        fn from(usage: g::Usage) -> Self {
            h::Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                cache_write_hour_tokens: 0,
                reasoning_tokens: usage.reasoning_tokens,
                estimated: usage.estimated,
            }
        }
    }

    fn pricing(pricing: g::Pricing) -> h::Pricing {
        h::Pricing::flat(h::Prices {
            input: pricing.input,
            output: pricing.output,
            cache_read: pricing.cache_read,
            cache_write: pricing.cache_write,
            cache_write_hour: None,
        })
    }

    /// A 0.1 manifest. Every 0.1 plugin handles its key itself.
    pub(crate) fn provider_info(info: g::ProviderInfo) -> h::ProviderInfo {
        h::ProviderInfo {
            id: info.id,
            name: info.name,
            version: info.version,
            default_base_url: info.default_base_url,
            api_key_env: info.api_key_env,
            base_url_env: info.base_url_env,
            hosts: info.hosts,
            auth: h::AuthScheme::PluginSigns,
            key_optional: true,
            stream_format: h::StreamFormat::Bytes,
            models: info.models.into_iter().map(model).collect(),
        }
    }

    impl From<g::ProviderError> for h::ProviderError {
        fn from(error: g::ProviderError) -> Self {
            let unknown = |message| h::TransportDetail::new(message, h::TransportPhase::Unknown);
            match vendor_error(error) {
                Ok(error) => error,
                Err(g::ProviderError::Timeout(m)) => h::ProviderError::Timeout(unknown(m)),
                Err(g::ProviderError::Network(m)) => h::ProviderError::Network(unknown(m)),
                Err(other) => h::ProviderError::Protocol(format!("unmapped error {other:?}")),
            }
        }
    }
}

/// Contract 0.2.
pub(crate) mod v0_2 {
    use crate::runtime::bindings::v0_2::llmhost::provider::types as g;

    shared_conversions!();

    /// The request as a 0.2 plugin receives it.
    pub(crate) fn chat_request(request: &h::ChatRequest) -> g::ChatRequest {
        g::ChatRequest {
            model: request.model.clone(),
            messages: request.messages.iter().map(Into::into).collect(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            top_p: request.top_p,
            stop: request.stop.clone(),
            tools: tools(request),
            tool_choice: request.tool_choice.as_ref().map(tool_choice),
            response_format: request.response_format.as_ref().map(response_format),
            reasoning: request.reasoning.as_ref().map(reasoning),
            user: request.user.clone(),
            vendor_params: request.vendor_params.clone(),
        }
    }

    impl From<g::Usage> for h::Usage {
        fn from(usage: g::Usage) -> Self {
            h::Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                cache_write_hour_tokens: usage.cache_write_hour_tokens,
                reasoning_tokens: usage.reasoning_tokens,
                estimated: usage.estimated,
            }
        }
    }

    fn prices(prices: g::Prices) -> h::Prices {
        h::Prices {
            input: prices.input,
            output: prices.output,
            cache_read: prices.cache_read,
            cache_write: prices.cache_write,
            cache_write_hour: prices.cache_write_hour,
        }
    }

    fn pricing(pricing: g::Pricing) -> h::Pricing {
        h::Pricing {
            base: prices(pricing.base),
            tiers: pricing
                .tiers
                .into_iter()
                .map(|tier| h::PriceTier {
                    above_input_tokens: tier.above_input_tokens,
                    prices: prices(tier.prices),
                })
                .collect(),
            off_peak: pricing
                .off_peak
                .into_iter()
                .map(|window| h::PriceWindow {
                    start_minute: window.start_minute,
                    end_minute: window.end_minute,
                    prices: prices(window.prices),
                })
                .collect(),
        }
    }

    /// A 0.2 manifest.
    pub(crate) fn provider_info(info: g::ProviderInfo) -> h::ProviderInfo {
        h::ProviderInfo {
            id: info.id,
            name: info.name,
            version: info.version,
            default_base_url: info.default_base_url,
            api_key_env: info.api_key_env,
            base_url_env: info.base_url_env,
            hosts: info.hosts,
            auth: match info.auth {
                g::AuthScheme::Bearer => h::AuthScheme::Bearer,
                g::AuthScheme::Header(name) => h::AuthScheme::Header(name),
                g::AuthScheme::Query(name) => h::AuthScheme::Query(name),
                g::AuthScheme::None => h::AuthScheme::None,
                g::AuthScheme::PluginSigns => h::AuthScheme::PluginSigns,
            },
            key_optional: info.key_optional,
            stream_format: match info.stream_format {
                g::StreamFormat::Sse => h::StreamFormat::Sse,
                g::StreamFormat::Bytes => h::StreamFormat::Bytes,
            },
            models: info.models.into_iter().map(model).collect(),
        }
    }

    fn transport(detail: g::TransportDetail) -> h::TransportDetail {
        h::TransportDetail {
            message: detail.message,
            phase: match detail.phase {
                g::TransportPhase::Connect => h::TransportPhase::Connect,
                g::TransportPhase::Request => h::TransportPhase::Request,
                g::TransportPhase::Body => h::TransportPhase::Body,
                g::TransportPhase::Unknown => h::TransportPhase::Unknown,
            },
            elapsed_ms: detail.elapsed_ms,
        }
    }

    impl From<g::ProviderError> for h::ProviderError {
        fn from(error: g::ProviderError) -> Self {
            match vendor_error(error) {
                Ok(error) => error,
                Err(g::ProviderError::Timeout(d)) => h::ProviderError::Timeout(transport(d)),
                Err(g::ProviderError::Network(d)) => h::ProviderError::Network(transport(d)),
                Err(other) => h::ProviderError::Protocol(format!("unmapped error {other:?}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types as h;

    #[test]
    fn capability_flags_keep_their_meaning_across_versions() {
        use crate::runtime::bindings::v0_2::llmhost::provider::types as g;
        let guest = g::Capabilities::TOOLS | g::Capabilities::TEMPERATURE;
        let host = v0_2::capabilities(guest);
        assert!(host.contains(h::Capabilities::TOOLS));
        assert!(host.contains(h::Capabilities::TEMPERATURE));
        assert!(!host.contains(h::Capabilities::VISION));
    }
}
