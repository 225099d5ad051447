//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host performs the I/O (and decides which hosts a plugin may reach);
//! this module builds the request, streams the body out and reads the
//! response body incrementally, so stream parsers see bytes as they arrive.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};
use crate::types::ProviderError;
use std::time::Duration;

/// Largest piece read from a response body at once.
const READ_SIZE: u64 = 64 * 1024;
/// `blocking-write-and-flush` accepts at most this many bytes per call.
const WRITE_SIZE: usize = 4096;

/// An HTTP method this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// An outgoing request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: HttpMethod,
    /// Absolute URL: `https://host[:port]/path?query`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Connect and first-byte timeout.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A POST of a JSON body.
    pub fn post_json(url: String, body: &serde_json::Value) -> Self {
        Self {
            method: HttpMethod::Post,
            url,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.to_string().into_bytes()),
            timeout: None,
        }
    }

    /// A GET.
    pub fn get(url: String) -> Self {
        Self {
            method: HttpMethod::Get,
            url,
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the connect and first-byte timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Response headers with lowercase names.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// Builds from name/value pairs; names are lowercased.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
        )
    }

    /// The first value of `name` (lowercase), if it is valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// A response whose body has not been read yet.
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: BodyReader,
}

/// Reads a response body piece by piece.
pub struct BodyReader {
    // Field order is drop order: the stream is a child of the body, which is
    // a child of the response.
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
    done: bool,
}

impl BodyReader {
    /// The next piece of the body, `None` at its end.
    pub fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, ProviderError> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.stream.blocking_read(READ_SIZE) {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Ok(Some(bytes)),
                Err(StreamError::Closed) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(err)) => {
                    self.done = true;
                    let detail = err.to_debug_string();
                    return Err(ProviderError::Network(format!(
                        "reading the response body failed: {detail}"
                    )));
                }
            }
        }
    }

    /// The rest of the body; fails with a protocol error past `limit` bytes.
    pub fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, ProviderError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk()? {
            out.extend_from_slice(&chunk);
            if out.len() > limit {
                return Err(ProviderError::Protocol(format!(
                    "response body larger than {limit} bytes"
                )));
            }
        }
        Ok(out)
    }
}

/// The parts of an absolute URL that wasi:http wants separately.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    https: bool,
    authority: &'a str,
    path_and_query: String,
}

fn split_url(url: &str) -> Result<UrlParts<'_>, ProviderError> {
    let invalid = || ProviderError::InvalidRequest(crate::detail(format!("invalid URL `{url}`")));
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(invalid());
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return Err(invalid());
    }
    Ok(UrlParts {
        https,
        authority,
        path_and_query: if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        },
    })
}

/// Joins a base URL and a path (`https://api.x/v1` + `/chat` → `.../v1/chat`).
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Sends a request and waits for the response head.
pub fn send(request: Request) -> Result<Response, ProviderError> {
    let url = split_url(&request.url)?;
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone().into_bytes()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|err| {
        ProviderError::InvalidRequest(crate::detail(format!("header rejected: {err:?}")))
    })?;
    let outgoing = OutgoingRequest::new(fields);
    let method = match request.method {
        HttpMethod::Get => Method::Get,
        HttpMethod::Post => Method::Post,
    };
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let set = outgoing
        .set_method(&method)
        .and(outgoing.set_scheme(Some(&scheme)))
        .and(outgoing.set_authority(Some(url.authority)))
        .and(outgoing.set_path_with_query(Some(&url.path_and_query)));
    if set.is_err() {
        return Err(ProviderError::InvalidRequest(crate::detail(format!(
            "URL `{}` rejected",
            request.url
        ))));
    }
    let body = outgoing
        .body()
        .map_err(|()| ProviderError::Protocol("request body already taken".into()))?;

    let options = request.timeout.map(|timeout| {
        let options = RequestOptions::new();
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        // A host may not support every option; the host enforces the
        // request's deadline on its own anyway.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        options
    });
    let pending = outgoing_handler::handle(outgoing, options).map_err(map_error_code)?;

    // The body is written after `handle`: the host only drains it once the
    // request is under way.
    {
        let out = body
            .write()
            .map_err(|()| ProviderError::Protocol("request body stream unavailable".into()))?;
        if let Some(bytes) = &request.body {
            for piece in bytes.chunks(WRITE_SIZE) {
                out.blocking_write_and_flush(piece).map_err(|err| {
                    ProviderError::Network(format!("sending the request body failed: {err:?}"))
                })?;
            }
        }
    }
    OutgoingBody::finish(body, None).map_err(map_error_code)?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(map_error_code(code)),
        Some(Err(())) | None => {
            return Err(ProviderError::Protocol(
                "the host returned no response".into(),
            ));
        }
    };
    let status = response.status();
    let headers = Headers::from_pairs(response.headers().entries());
    let incoming = response
        .consume()
        .map_err(|()| ProviderError::Protocol("response body already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| ProviderError::Protocol("response body stream unavailable".into()))?;
    Ok(Response {
        status,
        headers,
        body: BodyReader {
            stream,
            _body: incoming,
            _response: response,
            done: false,
        },
    })
}

/// Maps a wasi:http failure onto the contract's error variants.
pub fn map_error_code(code: ErrorCode) -> ProviderError {
    match code {
        ErrorCode::HttpRequestDenied => {
            ProviderError::Network("request denied by the host: destination not approved".into())
        }
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => ProviderError::Timeout(format!("{code:?}")),
        ErrorCode::HttpResponseIncomplete => {
            ProviderError::Protocol("the response ended before it was complete".into())
        }
        other => ProviderError::Network(format!("{other:?}")),
    }
}
