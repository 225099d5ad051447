//! HTTP request descriptions and a view of response headers.
//!
//! A plugin never sends anything: it describes a request below the base URL
//! and the host sends it, adding `content-length`, `user-agent`, the request
//! id header, the key and the configured extra headers. These helpers build
//! the descriptions; [`Headers`] reads what the vendor answered.

use crate::types::{HttpRequest, HttpResponse, Method};

/// A POST of `body` as JSON to `path` (below the base URL), with
/// `content-type: application/json`.
pub fn post_json(path: &str, body: &serde_json::Value) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        path: path.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// A GET of `path` (below the base URL), without a body.
pub fn get(path: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        path: path.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// `request` with the header `name: value` added (the name lowercased),
/// replacing any header of that name it had.
pub fn with_header(
    mut request: HttpRequest,
    name: impl Into<String>,
    value: impl Into<String>,
) -> HttpRequest {
    let name = name.into().to_ascii_lowercase();
    request
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
    request.headers.push((name, value.into()));
    request
}

/// Whether `status` is a success (2xx).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Response headers, looked up by lowercase name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The headers of `response`.
    pub fn from_response(response: &HttpResponse) -> Self {
        Self::from_pairs(response.headers.iter().cloned())
    }

    /// Builds from name/value pairs; names are lowercased.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(name, value)| (name.into().to_ascii_lowercase(), value.into()))
                .collect(),
        )
    }

    /// The first value of `name` (lowercase), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn post_json_carries_the_body_and_its_type() {
        let request = post_json("/chat/completions", &json!({"model": "m"}));
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.path, "/chat/completions");
        assert_eq!(
            request.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(request.body, br#"{"model":"m"}"#);
    }

    #[test]
    fn with_header_replaces_a_header_of_the_same_name() {
        let request = with_header(get("/models"), "Accept", "text/plain");
        let request = with_header(request, "accept", "application/json");
        assert_eq!(request.method, Method::Get);
        assert!(request.body.is_empty());
        assert_eq!(
            request.headers,
            vec![("accept".to_string(), "application/json".to_string())]
        );
    }

    #[test]
    fn headers_are_found_by_lowercase_name() {
        let response = HttpResponse {
            status: 200,
            headers: vec![
                ("X-Request-Id".into(), "req_1".into()),
                ("x-request-id".into(), "req_2".into()),
            ],
            body: Vec::new(),
        };
        let headers = Headers::from_response(&response);
        assert_eq!(headers.get("x-request-id"), Some("req_1"));
        assert_eq!(headers.get("retry-after"), None);
    }

    #[test]
    fn success_is_2xx() {
        assert!(is_success(200) && is_success(204) && is_success(299));
        assert!(!is_success(199) && !is_success(300) && !is_success(429));
    }
}
