//! Replies: what the simulator sends back, down to how the body is split
//! into writes and when each write happens.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, StatusCode};

/// A complete HTTP response: status, headers and a body sent as a sequence of
/// parts, each written and flushed on its own after an optional delay.
///
/// Built by the simulator for its default answers, or by tests and queued
/// with [`crate::Simulator::enqueue`].
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    parts: Vec<Bytes>,
    /// Used only when `headers` has no content-type, so callers can override it.
    default_content_type: Option<&'static str>,
    delay_each: Duration,
    delay_headers: Duration,
    hang: bool,
}

/// Formats one server-sent event carrying `json`: `data: {json}\n\n`.
pub fn sse_data(json: &serde_json::Value) -> String {
    format!("data: {json}\n\n")
}

/// Formats one named server-sent event, as Anthropic streams them:
/// `event: NAME\ndata: {json}\n\n`.
pub fn sse_event(name: &str, json: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {json}\n\n")
}

impl Reply {
    fn new(status: u16, parts: Vec<Bytes>, default_content_type: Option<&'static str>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            parts,
            default_content_type,
            delay_each: Duration::ZERO,
            delay_headers: Duration::ZERO,
            hang: false,
        }
    }

    /// A JSON body in one part (content-type `application/json` unless set).
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::json_text(status, body.to_string())
    }

    /// A JSON body that is already serialized, so field order is kept as written.
    pub(crate) fn json_text(status: u16, body: String) -> Reply {
        Reply::new(status, vec![Bytes::from(body)], Some("application/json"))
    }

    /// A 200 event stream (content-type `text/event-stream` unless set). Each
    /// item is written verbatim as one part, so it should be a complete event
    /// such as [`sse_data`] makes, or a deliberately partial one.
    pub fn sse(events: impl IntoIterator<Item = String>) -> Reply {
        let parts = events.into_iter().map(Bytes::from).collect();
        Reply::new(200, parts, Some("text/event-stream"))
    }

    /// Bytes written exactly as given, one part per write, with no
    /// content-type unless one is added with [`Reply::header`].
    pub fn raw(status: u16, parts: Vec<Vec<u8>>) -> Reply {
        Reply::new(status, parts.into_iter().map(Bytes::from).collect(), None)
    }

    /// The error body OpenAI sends:
    /// `{"error":{"message":..,"type":..,"param":null,"code":..}}`.
    pub fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Reply {
        crate::openai::error_reply(status, kind, None, code, message)
    }

    /// The error body DeepSeek sends, OpenAI's shape with DeepSeek's `code`:
    /// `{"error":{"message":..,"type":..,"param":null,"code":"invalid_request_error"}}`.
    /// For example 402 `unknown_error` "Insufficient Balance", or 503
    /// `unknown_error` "Server Overloaded".
    pub fn deepseek_error(status: u16, kind: &str, message: &str) -> Reply {
        crate::deepseek::error_reply(status, kind, message)
    }

    /// The error body xAI sends, whose `error` is a plain string:
    /// `{"code":"Client specified an invalid argument","error":"Incorrect API key provided: ..."}`.
    pub fn xai_error(status: u16, code: &str, message: &str) -> Reply {
        crate::xai::error_reply(status, code, message)
    }

    /// The error body Anthropic sends, with a fresh request id also sent as
    /// the `request-id` header:
    /// `{"type":"error","error":{"type":..,"message":..},"request_id":"req_.."}`.
    /// Anthropic adds `retry-after` to its 429s; add it with
    /// [`Reply::header`].
    pub fn anthropic_error(status: u16, error_type: &str, message: &str) -> Reply {
        crate::anthropic::error_reply(status, error_type, message)
    }

    /// Adds a response header. Repeating a name sends it several times; a
    /// `content-type` replaces the default one. Names or values that HTTP
    /// cannot carry are skipped with a warning when the reply is sent.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits `delay` before writing each body part.
    pub fn delay_each(mut self, delay: Duration) -> Reply {
        self.delay_each = delay;
        self
    }

    /// Waits `delay` before sending the status line and headers, as a slow
    /// vendor does before its first byte.
    pub fn delay_headers(mut self, delay: Duration) -> Reply {
        self.delay_headers = delay;
        self
    }

    /// After the last part, keeps the connection open without ending the
    /// body, until the client gives up or the simulator is dropped.
    pub fn hang(mut self) -> Reply {
        self.hang = true;
        self
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Turns the reply into a response whose body produces the parts on
    /// schedule.
    pub(crate) async fn into_response(self) -> Response {
        if !self.delay_headers.is_zero() {
            tokio::time::sleep(self.delay_headers).await;
        }
        let status = StatusCode::from_u16(self.status).unwrap_or_else(|_| {
            tracing::warn!(status = self.status, "invalid status in reply, sending 500");
            StatusCode::INTERNAL_SERVER_ERROR
        });

        let streamed = self.hang || !self.delay_each.is_zero() || self.parts.len() > 1;
        let body = if streamed {
            let delay = self.delay_each;
            let parts = futures::stream::iter(self.parts).then(move |part| async move {
                if delay.is_zero() {
                    // Returning Pending once makes hyper flush what it has,
                    // so each part still goes out as its own write.
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(part)
            });
            if self.hang {
                Body::from_stream(parts.chain(futures::stream::pending()))
            } else {
                Body::from_stream(parts)
            }
        } else {
            // One part and no timing: send it with a content-length, as the
            // vendors do for plain JSON.
            Body::from(self.parts.into_iter().next().unwrap_or_default())
        };

        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => tracing::warn!(%name, %value, "skipping header that HTTP cannot carry"),
            }
        }
        if let Some(content_type) = self.default_content_type
            && !headers.contains_key(CONTENT_TYPE)
        {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        response
    }
}
