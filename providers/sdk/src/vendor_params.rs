//! The request's `vendor-params`: parameters the contract has no field for,
//! passed through to the vendor's request body.

use crate::types::{ChatRequest, ProviderError};
use serde_json::Value;

/// Merges the JSON object in `request.vendor_params` into the top level of
/// `body`, replacing members of the same name; nothing when there are
/// none.
///
/// Text that is not JSON, or JSON that is not an object, is an
/// `invalid-request` error saying so; so is a `body` that is not an object
/// while there are parameters to merge.
///
/// ```
/// use llmhost_provider_sdk::vendor_params;
/// # use llmhost_provider_sdk::types::ChatRequest;
/// # fn request(vendor_params: Option<String>) -> ChatRequest {
/// #     ChatRequest { model: "m".into(), messages: Vec::new(), temperature: None,
/// #         max_tokens: None, top_p: None, stop: Vec::new(), tools: Vec::new(),
/// #         tool_choice: None, response_format: None, reasoning: None, user: None,
/// #         vendor_params }
/// # }
/// let mut body = serde_json::json!({"model": "m", "seed": 1});
/// vendor_params::merge(&mut body, &request(Some(r#"{"seed": 7, "logprobs": true}"#.into())))?;
/// assert_eq!(body, serde_json::json!({"model": "m", "seed": 7, "logprobs": true}));
/// # Ok::<(), llmhost_provider_sdk::types::ProviderError>(())
/// ```
pub fn merge(body: &mut Value, request: &ChatRequest) -> Result<(), ProviderError> {
    let Some(text) = request.vendor_params.as_deref() else {
        return Ok(());
    };
    let params: Value = serde_json::from_str(text).map_err(|err| {
        invalid(format!(
            "vendor-params is not valid JSON ({err}); it must be a JSON object"
        ))
    })?;
    let Value::Object(params) = params else {
        return Err(invalid(format!(
            "vendor-params must be a JSON object, not {}",
            kind(&params)
        )));
    };
    if params.is_empty() {
        return Ok(());
    }
    let Value::Object(target) = body else {
        return Err(invalid(
            "vendor-params cannot be merged: the request body is not a JSON object".into(),
        ));
    };
    for (name, value) in params {
        target.insert(name, value);
    }
    Ok(())
}

fn invalid(message: String) -> ProviderError {
    ProviderError::InvalidRequest(crate::detail(message))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(vendor_params: Option<&str>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
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
            vendor_params: vendor_params.map(str::to_owned),
        }
    }

    fn message(error: ProviderError) -> String {
        match error {
            ProviderError::InvalidRequest(detail) => detail.message,
            other => panic!("expected invalid request, got {other:?}"),
        }
    }

    #[test]
    fn members_are_added_and_replace_same_named_ones() {
        let mut body = json!({"model": "m", "temperature": 0.5, "nested": {"a": 1}});
        merge(
            &mut body,
            &request(Some(
                r#"{"temperature": 0, "nested": {"b": 2}, "seed": 42}"#,
            )),
        )
        .expect("merges");
        assert_eq!(
            body,
            json!({"model": "m", "temperature": 0, "nested": {"b": 2}, "seed": 42})
        );
    }

    #[test]
    fn no_params_leave_the_body_alone() {
        let mut body = json!({"model": "m"});
        merge(&mut body, &request(None)).expect("nothing to merge");
        merge(&mut body, &request(Some("{}"))).expect("nothing to merge");
        assert_eq!(body, json!({"model": "m"}));
    }

    #[test]
    fn params_that_are_not_an_object_are_refused() {
        let mut body = json!({"model": "m"});
        let error = merge(&mut body, &request(Some("{\"seed\": "))).unwrap_err();
        assert!(message(error).contains("not valid JSON"));
        let error = merge(&mut body, &request(Some("[1, 2]"))).unwrap_err();
        assert_eq!(
            message(error),
            "vendor-params must be a JSON object, not an array"
        );
        let error = merge(&mut json!([]), &request(Some(r#"{"a": 1}"#))).unwrap_err();
        assert!(message(error).contains("not a JSON object"));
        assert_eq!(body, json!({"model": "m"}));
    }
}
