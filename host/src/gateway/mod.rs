//! The gateway's protocol layer: OpenAI Chat Completions and Anthropic
//! Messages requests parsed into [`ChatRequest`](crate::types::ChatRequest)s,
//! and the host's answers, stream chunks and errors rendered back in each
//! protocol's shape, as the official SDKs read them.
//!
//! The protocol modules are pure: bytes in, values out, no I/O. The HTTP
//! server (`server.rs`) resolves models, authenticates keys, enforces
//! budgets (`admission.rs`, over the config service's ledger), counts
//! (`metrics.rs`) and moves the bytes (`chat.rs`).
//!
//! Parsing never panics on client input; a body that does not fit is an
//! [`ApiError`] whose `param` names the field at fault (`messages[2].content`).

mod admin;
mod admission;
pub mod anthropic;
mod chat;
mod console;
pub mod errors;
mod limits;
mod metrics;
pub mod openai;
mod server;

pub use metrics::Metrics;
pub use server::{DEFAULT_LISTEN, Gateway, GatewayOptions, MASTER_KEY_ENV, shutdown_signal};

pub use errors::{ApiError, ErrorClass};

use serde_json::{Map, Value};

type Object = Map<String, Value>;

/// The body as a JSON object.
fn parse_object(body: &[u8]) -> Result<Object, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(ApiError::invalid_request(format!(
            "request body must be a JSON object, not {}",
            kind(&other)
        ))),
        Err(err) => Err(ApiError::invalid_request(format!(
            "request body is not valid JSON: {err}"
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A member of `object`; a `null` member counts as absent, as the SDKs
/// and other clients send `null` for "not given".
fn field<'a>(object: &'a Object, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// `path.key`, or `key` at the top level.
fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).param(param)
}

fn wrong_type(path: &str, expected: &str, value: &Value) -> ApiError {
    invalid(
        format!("`{path}` must be {expected}, not {}", kind(value)),
        path,
    )
}

/// Member `key` of `object` at `path`, which must be present.
fn required<'a>(object: &'a Object, path: &str, key: &str) -> Result<&'a Value, ApiError> {
    field(object, key).ok_or_else(|| {
        let path = child(path, key);
        invalid(format!("`{path}` is required"), path)
    })
}

/// Member `key` converted by `read`, or `None` when absent or null.
fn optional<'a, T>(
    object: &'a Object,
    path: &str,
    key: &str,
    read: impl FnOnce(&'a Value, &str) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    field(object, key)
        .map(|value| read(value, &child(path, key)))
        .transpose()
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(path, "a string", value))
}

/// A string that is not empty.
fn name<'a>(value: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    match string(value, path)? {
        "" => Err(invalid(format!("`{path}` must not be empty"), path)),
        text => Ok(text),
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Object, ApiError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], ApiError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| wrong_type(path, "an array", value))
}

fn boolean(value: &Value, path: &str) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(path, "a boolean", value))
}

/// A whole number of at least `min` that fits a `u32`.
fn count(value: &Value, path: &str, min: u32) -> Result<u32, ApiError> {
    let number = match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            invalid(
                format!("`{path}` must be a non-negative integer, not {n}"),
                path,
            )
        })?,
        other => return Err(wrong_type(path, "a non-negative integer", other)),
    };
    match u32::try_from(number) {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(invalid(format!("`{path}` must be at least {min}"), path)),
        Err(_) => Err(invalid(format!("`{path}` is too large"), path)),
    }
}

/// A number in `min..=max`.
fn number_in(value: &Value, path: &str, min: f64, max: f64) -> Result<f32, ApiError> {
    let number = value
        .as_f64()
        .ok_or_else(|| wrong_type(path, "a number", value))?;
    if (min..=max).contains(&number) {
        // In range, so the narrowing cannot overflow.
        Ok(number as f32)
    } else {
        Err(invalid(
            format!("`{path}` must be between {min} and {max}, not {number}"),
            path,
        ))
    }
}

/// An array of strings.
fn strings(value: &Value, path: &str) -> Result<Vec<String>, ApiError> {
    array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &format!("{path}[{i}]")).map(str::to_owned))
        .collect()
}

/// Vendor parameters as JSON object text: `passed` (request fields the
/// contract has no field for), then the members of the client's own
/// `vendor_params` object, which win over them; `None` when there are none.
fn vendor_params(mut passed: Object, body: &Object) -> Result<Option<String>, ApiError> {
    if let Some(value) = field(body, "vendor_params") {
        let explicit = object(value, "vendor_params")?;
        passed.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok((!passed.is_empty()).then(|| Value::Object(passed).to_string()))
}

/// `text` parsed as JSON when it is a JSON object, for tool arguments a
/// model wrote (which may be invalid).
fn json_object(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                Just("user".to_owned()),
                Just("assistant".to_owned()),
                Just("text".to_owned()),
                Just("tool_result".to_owned()),
                Just("function".to_owned()),
                ".{0,6}".prop_map(String::from),
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Keys the parsers know, so generated bodies get past the first check.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("model"),
            Just("messages"),
            Just("role"),
            Just("content"),
            Just("type"),
            Just("text"),
            Just("tools"),
            Just("tool_calls"),
            Just("tool_choice"),
            Just("function"),
            Just("name"),
            Just("arguments"),
            Just("input"),
            Just("source"),
            Just("image_url"),
            Just("url"),
            Just("system"),
            Just("max_tokens"),
            Just("stop"),
            Just("thinking"),
            Just("response_format"),
            Just("json_schema"),
            Just("stream_options"),
            Just("vendor_params"),
            Just("cache_control"),
            Just("tool_use_id"),
            Just("tool_call_id"),
        ]
        .prop_map(str::to_owned)
    }

    proptest! {
        #[test]
        fn no_body_makes_a_parser_panic(value in json()) {
            let bytes = value.to_string().into_bytes();
            let _ = openai::parse_chat(&bytes);
            let _ = anthropic::parse_messages(&bytes);
            let _ = anthropic::parse_count_tokens(&bytes);
        }

        #[test]
        fn no_bytes_make_a_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(openai::parse_chat(&bytes).is_err());
            prop_assert!(anthropic::parse_messages(&bytes).is_err());
            prop_assert!(anthropic::parse_count_tokens(&bytes).is_err());
        }
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused_clearly() {
        let err = parse_object(b"{\"model\": ").unwrap_err();
        assert!(
            err.message.starts_with("request body is not valid JSON: "),
            "{}",
            err.message
        );
        assert_eq!(err.status, 400);
        let err = parse_object(b"[1]").unwrap_err();
        assert_eq!(
            err.message,
            "request body must be a JSON object, not an array"
        );
    }

    #[test]
    fn numbers_are_checked_for_range_and_kind() {
        let path = "temperature";
        assert_eq!(number_in(&Value::from(0.5), path, 0.0, 1.0).ok(), Some(0.5));
        let err = number_in(&Value::from(1.5), path, 0.0, 1.0).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("temperature"));
        let err = number_in(&Value::from("hot"), path, 0.0, 1.0).unwrap_err();
        assert_eq!(err.message, "`temperature` must be a number, not a string");
        assert!(count(&Value::from(-1), "n", 0).is_err());
        assert!(count(&Value::from(1.5), "n", 0).is_err());
        assert!(count(&Value::from(u64::from(u32::MAX) + 1), "n", 0).is_err());
        assert!(count(&Value::from(0), "n", 1).is_err());
        assert_eq!(count(&Value::from(7), "n", 1).ok(), Some(7));
    }

    #[test]
    fn explicit_vendor_params_win_over_passed_fields() {
        let mut passed = Object::new();
        passed.insert("seed".into(), Value::from(1));
        let body: Object = serde_json::from_str(r#"{"vendor_params": {"seed": 2, "x": true}}"#)
            .unwrap_or_default();
        let text = vendor_params(passed, &body)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(serde_json::json!({"seed": 2, "x": true}))
        );
        let body: Object = serde_json::from_str(r#"{"vendor_params": [1]}"#).unwrap_or_default();
        let err = vendor_params(Object::new(), &body).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("vendor_params"));
        assert_eq!(
            vendor_params(Object::new(), &Object::new()).ok(),
            Some(None)
        );
    }
}
