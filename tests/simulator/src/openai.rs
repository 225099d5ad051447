//! OpenAI's chat completions API, as served at `https://api.openai.com/v1`.

pub(crate) mod answer;
pub(crate) mod request;

use std::sync::LazyLock;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use serde::Serialize;

use crate::server::Context;
use crate::{Reply, ids};
use answer::{Dialect, Envelope};
use request::ChatRequest;

/// The chat endpoint, below the vendor prefix.
pub(crate) const CHAT_PATH: &str = "/v1/chat/completions";
const MODELS_PATH: &str = "/v1/models";

/// Models the simulator accepts, with their `created` timestamps as listed by
/// OpenAI. Any other model gets OpenAI's 404.
const MODELS: &[(&str, u64)] = &[
    ("gpt-4.1", 1_744_316_542),
    ("gpt-4.1-mini", 1_744_318_173),
    ("gpt-4.1-nano", 1_744_321_707),
    ("gpt-4o", 1_715_367_049),
    ("gpt-4o-mini", 1_721_172_741),
    ("o3", 1_744_225_308),
    ("o4-mini", 1_744_225_351),
    ("gpt-5", 1_754_425_777),
    ("gpt-5-mini", 1_754_425_928),
    ("gpt-5-nano", 1_754_426_384),
    ("gpt-5.1", 1_763_000_000),
    ("gpt-6-astra", 1_788_393_600),
    ("gpt-6-sol", 1_790_035_200),
    ("gpt-6-luna", 1_790_035_200),
    ("gpt-6.2-astra", 1_794_873_600),
    ("gpt-6.2-sol", 1_794_873_600),
    ("gpt-4-turbo", 1_712_361_441),
    ("gpt-3.5-turbo", 1_677_610_602),
];

/// The OpenAI model ids the simulator accepts, in its `/v1/models` order.
pub fn openai_models() -> &'static [&'static str] {
    static IDS: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| MODELS.iter().map(|(id, _)| *id).collect());
    &IDS
}

// A tier-5-like budget: generous enough that the headers never suggest
// throttling unless a test scripts a 429.
const REQUESTS_PER_MINUTE: u64 = 10_000;
const TOKENS_PER_MINUTE: u64 = 30_000_000;

/// Answers a request for `path` (below the `/openai` prefix) with what
/// OpenAI would send, scripted replies aside.
pub(crate) fn respond(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    context: &Context,
) -> Reply {
    let reply = match (method, path) {
        (&Method::POST, CHAT_PATH) => chat(headers, body, context),
        (&Method::GET, MODELS_PATH) => list_models(headers),
        (&Method::GET, _) if path.starts_with("/v1/models/") => {
            retrieve_model(headers, &path["/v1/models/".len()..])
        }
        _ => error_reply(
            404,
            "invalid_request_error",
            None,
            None,
            &format!("Invalid URL ({method} {path})"),
        ),
    };
    reply.header("x-request-id", &ids::request_id())
}

/// An OpenAI error reply. `param` names the offending request field, if any.
pub(crate) fn error_reply(
    status: u16,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
    message: &str,
) -> Reply {
    Reply::json_text(status, error_body(kind, param, code, message))
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// The same body on one line, as DeepSeek sends it.
pub(crate) fn compact_error_body(
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
    message: &str,
) -> String {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    answer::to_json(&body)
}

/// OpenAI pretty-prints its error bodies with four-space indents and a
/// trailing newline; clients that log raw bodies show exactly that.
fn error_body(kind: &str, param: Option<&str>, code: Option<&str>, message: &str) -> String {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    if body.serialize(&mut serializer).is_err() {
        // Unreachable for a struct of strings; fall back to the compact form.
        return serde_json::json!({ "error": { "message": message } }).to_string();
    }
    out.push(b'\n');
    String::from_utf8_lossy(&out).into_owned()
}

/// Any non-empty bearer key is accepted: the simulator has no accounts, and
/// the point is to catch clients that send no key at all.
fn check_auth(headers: &HeaderMap) -> Result<(), Reply> {
    let value = headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let (key, shown) = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => (key.trim(), key.trim()),
        _ => ("", value.trim()),
    };
    if !key.is_empty() {
        return Ok(());
    }
    let shown = if shown.is_empty() {
        "''".to_owned()
    } else {
        mask(shown)
    };
    Err(error_reply(
        401,
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
        &format!(
            "Incorrect API key provided: {shown}. You can find your API key at \
             https://platform.openai.com/account/api-keys."
        ),
    ))
}

/// Shows only the ends of a credential, as OpenAI does in its 401 message.
fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn model_not_found(model: &str) -> Reply {
    error_reply(
        404,
        "invalid_request_error",
        None,
        Some("model_not_found"),
        &format!("The model `{model}` does not exist or you do not have access to it."),
    )
}

fn chat(headers: &HeaderMap, body: &[u8], context: &Context) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    let request = match ChatRequest::parse(body) {
        Ok(request) => request,
        Err(err) => return err.into_openai(),
    };
    if !openai_models().contains(&request.model.as_str()) {
        return model_not_found(&request.model);
    }

    let outcome = answer::compose(&request);
    let id = ids::completion_id();
    let fingerprint = ids::fingerprint(&request.model);
    let envelope = Envelope {
        id: &id,
        created: ids::unix_now(),
        model: &request.model,
        system_fingerprint: &fingerprint,
    };
    let reply = if request.stream {
        Reply::sse(answer::stream_events(
            &envelope,
            &outcome,
            request.include_usage,
            Dialect::OPENAI,
        ))
        .delay_each(context.stream_delay)
    } else {
        Reply::json_text(
            200,
            answer::completion(&envelope, &outcome, Dialect::OPENAI),
        )
    };
    with_success_headers(reply, context, outcome.usage.total_tokens)
}

fn with_success_headers(reply: Reply, context: &Context, tokens: usize) -> Reply {
    let reply = reply.header("openai-version", "2020-10-01").header(
        "openai-processing-ms",
        &context.started.elapsed().as_millis().to_string(),
    );
    with_rate_limit_headers(reply, tokens)
}

/// OpenAI's `x-ratelimit-*` headers for a request that used `tokens`, which
/// xAI sends in the same form.
pub(crate) fn with_rate_limit_headers(reply: Reply, tokens: usize) -> Reply {
    let tokens = u64::try_from(tokens)
        .unwrap_or(u64::MAX)
        .min(TOKENS_PER_MINUTE);
    // Limits refill continuously over a minute, so a reset takes the
    // consumed share of that minute.
    let reset = |used: u64, limit: u64| {
        ids::go_duration(Duration::from_millis(used.saturating_mul(60_000) / limit))
    };
    reply
        .header(
            "x-ratelimit-limit-requests",
            &REQUESTS_PER_MINUTE.to_string(),
        )
        .header("x-ratelimit-limit-tokens", &TOKENS_PER_MINUTE.to_string())
        .header(
            "x-ratelimit-remaining-requests",
            &(REQUESTS_PER_MINUTE - 1).to_string(),
        )
        .header(
            "x-ratelimit-remaining-tokens",
            &(TOKENS_PER_MINUTE - tokens).to_string(),
        )
        .header("x-ratelimit-reset-requests", &reset(1, REQUESTS_PER_MINUTE))
        .header(
            "x-ratelimit-reset-tokens",
            &reset(tokens, TOKENS_PER_MINUTE),
        )
}

#[derive(Serialize)]
struct ModelObject {
    id: &'static str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelObject>,
}

fn model_object(&(id, created): &(&'static str, u64)) -> ModelObject {
    ModelObject {
        id,
        object: "model",
        created,
        owned_by: "openai",
    }
}

fn list_models(headers: &HeaderMap) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    let list = ModelList {
        object: "list",
        data: MODELS.iter().map(model_object).collect(),
    };
    Reply::json_text(200, serde_json::to_string(&list).unwrap_or_default())
}

fn retrieve_model(headers: &HeaderMap, model: &str) -> Reply {
    if let Err(reply) = check_auth(headers) {
        return reply;
    }
    match MODELS.iter().find(|(id, _)| *id == model) {
        Some(entry) => Reply::json_text(
            200,
            serde_json::to_string(&model_object(entry)).unwrap_or_default(),
        ),
        None => model_not_found(model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_like_openai() {
        assert_eq!(mask("sk-abcdefghijklmnop"), "sk-************mnop");
        assert_eq!(mask("short"), "*****");
    }

    #[test]
    fn error_body_is_pretty_printed_in_openai_order() {
        let body = error_body("invalid_request_error", Some("messages"), None, "bad \"x\"");
        assert_eq!(
            body,
            "{\n    \"error\": {\n        \"message\": \"bad \\\"x\\\"\",\n        \
             \"type\": \"invalid_request_error\",\n        \"param\": \"messages\",\n        \
             \"code\": null\n    }\n}\n"
        );
    }
}
