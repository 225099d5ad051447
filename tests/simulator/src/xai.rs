//! xAI's OpenAI-compatible Grok API, as served at `https://api.x.ai/v1`.
//!
//! It differs from OpenAI's where xAI does: error bodies are
//! `{"code": <gRPC status text>, "error": <message string>}`, a bad key is a
//! 400, streamed usage comes in the second-to-last chunk followed by an empty
//! one, `grok-3-mini` shows `reasoning_content`, and reasoning tokens are
//! counted apart from `completion_tokens` (the total includes them). Token
//! counts are `o200k_base` estimates: xAI's tokenizer is its own.

use std::sync::LazyLock;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use serde::Serialize;

use crate::openai::answer::{
    self, CompletionTokensDetails, Dialect, Envelope, Placeholder, PromptTokensDetails, Usage,
};
use crate::openai::request::ChatRequest;
use crate::openai::{CHAT_PATH, with_rate_limit_headers};
use crate::server::Context;
use crate::{Reply, ids, tokens};

const MODELS_PATH: &str = "/v1/models";

/// How a model reasons, which decides what its answers show.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reasoning {
    None,
    /// Reasoning tokens are counted but the thinking is not shown.
    Hidden,
    /// The thinking is shown as `reasoning_content`.
    Shown,
}

/// Models the simulator accepts, with their `created` timestamps and how
/// they reason. Any other model gets xAI's 404.
const MODELS: &[(&str, u64, Reasoning)] = &[
    ("grok-4.5", 1_783_555_200, Reasoning::Hidden),
    ("grok-4.3", 1_777_507_200, Reasoning::Hidden),
    ("grok-4.20-0309-reasoning", 1_773_014_400, Reasoning::Hidden),
    ("grok-4", 1_752_019_200, Reasoning::Hidden),
    ("grok-4-fast-reasoning", 1_758_240_000, Reasoning::Hidden),
    ("grok-4-fast-non-reasoning", 1_758_240_000, Reasoning::None),
    ("grok-code-fast-1", 1_756_166_400, Reasoning::Hidden),
    ("grok-3", 1_743_724_800, Reasoning::None),
    ("grok-3-mini", 1_743_724_800, Reasoning::Shown),
];

/// The xAI model ids the simulator accepts, in its `/v1/models` order.
pub fn xai_models() -> &'static [&'static str] {
    static IDS: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| MODELS.iter().map(|(id, _, _)| *id).collect());
    &IDS
}

/// The gRPC status texts xAI puts in `code`.
const INVALID_ARGUMENT: &str = "Client specified an invalid argument";
const NOT_FOUND: &str = "Some requested entity was not found";

/// The team named in "no access" messages; the simulator has only one.
const TEAM_ID: &str = "3f0b0c1e-5a7d-4c2b-9e1f-6d8a2b4c7e90";

/// Answers a request for `path` (below the `/xai` prefix) with what xAI
/// would send, scripted replies aside.
pub(crate) fn respond(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    context: &Context,
) -> Reply {
    match (method, path) {
        (&Method::POST, CHAT_PATH) => chat(headers, body, context),
        (&Method::GET, MODELS_PATH) => list_models(headers),
        (&Method::GET, _) if path.starts_with("/v1/models/") => {
            retrieve_model(headers, &path["/v1/models/".len()..])
        }
        _ => error_reply(
            404,
            NOT_FOUND,
            &format!("No handler found for {method} {path}"),
        ),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    error: &'a str,
}

/// An xAI error reply.
pub(crate) fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    let body = answer::to_json(&ErrorBody {
        code,
        error: message,
    });
    Reply::json_text(status, body)
}

/// Any non-empty bearer key is accepted; a missing one gets the 400 xAI
/// sends for a wrong key.
fn check_auth(headers: &HeaderMap) -> Result<(), Reply> {
    let value = headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let (key, shown) = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => (key.trim(), key.trim()),
        // Another scheme: show what came after it, as the key meant.
        Some((_, rest)) => ("", rest.trim()),
        None => ("", value.trim()),
    };
    if !key.is_empty() {
        return Ok(());
    }
    Err(error_reply(
        400,
        INVALID_ARGUMENT,
        &format!(
            "Incorrect API key provided: {}. You can obtain an API key from https://console.x.ai.",
            mask(shown)
        ),
    ))
}

/// Shows two characters at each end of a credential, as xAI does.
fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 4 {
        return "***".to_owned();
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}***{tail}")
}

fn model_not_found(model: &str) -> Reply {
    error_reply(
        404,
        NOT_FOUND,
        &format!(
            "The model {model} does not exist or your team {TEAM_ID} does not have access to \
             it. Please ensure you're using the correct API key. If you believe this is a \
             mistake, please contact support and quote your team ID."
        ),
    )
}

fn chat(headers: &HeaderMap, body: &[u8], context: &Context) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    let request = match ChatRequest::parse(body) {
        Ok(request) => request,
        Err(err) => return error_reply(400, INVALID_ARGUMENT, &err.message),
    };
    let Some(&(_, _, reasoning)) = MODELS.iter().find(|(id, _, _)| *id == request.model) else {
        return model_not_found(&request.model);
    };

    let mut outcome = answer::compose(&request);
    let thinking = answer::reasoning_for(&outcome.answer);
    let reasoning_tokens = match reasoning {
        Reasoning::None => 0,
        Reasoning::Hidden | Reasoning::Shown => tokens::count(thinking),
    };
    if reasoning == Reasoning::Shown {
        outcome.reasoning = Some(thinking.to_owned());
    }
    outcome.usage = usage(
        outcome.usage.prompt_tokens,
        outcome.usage.completion_tokens,
        reasoning_tokens,
    );

    let id = ids::uuid();
    let fingerprint = ids::fingerprint(&request.model);
    let envelope = Envelope {
        id: &id,
        created: ids::unix_now(),
        model: &request.model,
        system_fingerprint: &fingerprint,
    };
    let dialect = Dialect {
        refusal: false,
        placeholder: Placeholder::Absent,
        trailing_empty_chunk: true,
    };
    let reply = if request.stream {
        Reply::sse(answer::stream_events(
            &envelope,
            &outcome,
            request.include_usage,
            dialect,
        ))
        .delay_each(context.stream_delay)
    } else {
        Reply::json_text(200, answer::completion(&envelope, &outcome, dialect))
    };
    with_rate_limit_headers(reply, outcome.usage.total_tokens)
}

/// xAI's usage: reasoning tokens stand beside `completion_tokens` rather
/// than inside it, and the total adds all three.
fn usage(prompt: usize, completion: usize, reasoning: usize) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion + reasoning,
        prompt_tokens_details: Some(PromptTokensDetails {
            text_tokens: Some(prompt),
            audio_tokens: Some(0),
            image_tokens: Some(0),
            cached_tokens: 0,
        }),
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: reasoning,
            audio_tokens: Some(0),
            accepted_prediction_tokens: Some(0),
            rejected_prediction_tokens: Some(0),
        }),
        num_sources_used: Some(0),
        ..Usage::default()
    }
}

#[derive(Serialize)]
struct ModelObject {
    id: &'static str,
    created: u64,
    object: &'static str,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList {
    data: Vec<ModelObject>,
    object: &'static str,
}

fn model_object(&(id, created, _): &(&'static str, u64, Reasoning)) -> ModelObject {
    ModelObject {
        id,
        created,
        object: "model",
        owned_by: "xai",
    }
}

fn list_models(headers: &HeaderMap) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    let list = ModelList {
        data: MODELS.iter().map(model_object).collect(),
        object: "list",
    };
    Reply::json_text(200, answer::to_json(&list))
}

fn retrieve_model(headers: &HeaderMap, model: &str) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    match MODELS.iter().find(|(id, _, _)| *id == model) {
        Some(entry) => Reply::json_text(200, answer::to_json(&model_object(entry))),
        None => model_not_found(model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_like_xai() {
        assert_eq!(mask("xai-abcdefbc"), "xa***bc");
        assert_eq!(mask("abc"), "***");
        assert_eq!(mask(""), "***");
    }
}
