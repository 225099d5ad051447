//! The host's own HTTP sends, for contract 0.2 plugins: a plugin describes
//! a request (method, path below the base URL, headers, body) and the host
//! sends it, adding what the plugin may not decide or see.
//!
//! Every request is framed as official vendor SDKs frame theirs: the body is
//! sized and goes out with `content-length`, never `transfer-encoding:
//! chunked`; it carries `user-agent: llmhost/<version>` (unless the
//! operator's extra headers name another) and `x-client-request-id`. The
//! operator's extra headers replace the plugin's of the same name, and the
//! API key is added last, replacing any header or query parameter of the
//! same name, so a plugin can neither see nor spoof it. Hop-by-hop and
//! framing headers (`host`, `content-length`, `transfer-encoding`,
//! `connection`, `keep-alive`, `upgrade`, `te`, `trailer`, `proxy-*`) are
//! the host's business and are dropped from the plugin's and the operator's.
//!
//! Destinations pass the same approval as contract 0.1's `wasi:http`
//! requests ([`super::gate::route`]), through the same process-wide pooled
//! clients (rustls, HTTP/2 by ALPN). Errors name a destination as
//! `host:port` only and never carry the path, the query or the key.
//! Dropping the future of [`send`], or the [`OutboundBody`], aborts the
//! upstream request.

use super::gate::{self, Approval, HttpClients};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::connect::capture_connection;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The `user-agent` of every request whose operator did not set one.
const USER_AGENT: &str = concat!("llmhost/", env!("CARGO_PKG_VERSION"));

/// The header carrying the host's id of the call.
const REQUEST_ID_HEADER: &str = "x-client-request-id";

/// Bytes a query component keeps as they are (RFC 3986 unreserved).
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How the host puts the API key on a request (the plugin's auth scheme).
/// The key is a [`SecretString`]: its `Debug` prints no key.
#[derive(Debug)]
pub(crate) enum Auth {
    /// No key.
    None,
    /// `authorization: Bearer <key>`.
    Bearer(SecretString),
    /// The key as the whole value of the named header (`x-api-key`).
    Header(String, SecretString),
    /// The key as the named query parameter, percent-encoded.
    Query(String, SecretString),
}

impl Auth {
    fn key(&self) -> Option<&SecretString> {
        match self {
            Auth::None => None,
            Auth::Bearer(key) | Auth::Header(_, key) | Auth::Query(_, key) => Some(key),
        }
    }
}

/// One request for the host to send on a plugin's behalf.
pub(crate) struct OutboundRequest {
    pub method: http::Method,
    /// The base URL (configured or the plugin's default); a trailing `/` is
    /// trimmed before `path` is appended.
    pub base_url: String,
    /// Path and query below the base URL, as the plugin prepared it: starts
    /// with `/`, not `//`, is ASCII, and holds no `://`, backslash, control
    /// character or space.
    pub path: String,
    /// The plugin's headers.
    pub headers: Vec<(String, String)>,
    /// The operator's extra headers: each replaces the plugin's headers of
    /// the same name (case-insensitively).
    pub extra_headers: Vec<(String, String)>,
    pub auth: Auth,
    /// The host's id of this call, sent as `x-client-request-id`.
    pub request_id: String,
    pub body: Bytes,
}

impl fmt::Debug for OutboundRequest {
    /// The operator's extra headers may hold credentials of their own, so
    /// only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Vec<&str> = self.extra_headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("base_url", &self.base_url)
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("extra_headers", &extra)
            .field("auth", &self.auth)
            .field("request_id", &self.request_id)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Where an exchange broke (the WIT `transport-phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Resolving the name or opening the connection (TLS included).
    Connect,
    /// Sending the request or waiting for the response head.
    Request,
    /// Reading the response body.
    Body,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Request => "request",
            Phase::Body => "body",
        })
    }
}

/// Why a request could not be sent or its response not read. No message
/// holds the path, the query or the key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboundError {
    /// The destination is not approved for the plugin, or a declared host
    /// resolves to no public address.
    #[error("{destination} is not an approved destination")]
    Denied {
        /// `host:port`.
        destination: String,
    },
    /// No response head within the first-byte timeout, or the connection
    /// timed out.
    #[error("timed out in the {phase} phase after {} ms", elapsed.as_millis())]
    Timeout { phase: Phase, elapsed: Duration },
    /// The connection failed or broke.
    #[error("network failure in the {phase} phase: {message}")]
    Network { phase: Phase, message: String },
    /// The response body is longer than the limit it was read with.
    #[error("the response body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// The request cannot be sent as described; nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// A response head, with its body still to read.
#[derive(Debug)]
pub(crate) struct OutboundResponse {
    pub status: u16,
    /// Names lowercase, in the order received; values that are not UTF-8
    /// are converted lossily.
    pub headers: Vec<(String, String)>,
    pub body: OutboundBody,
}

/// A response body, read as it arrives. Everything read from it counts
/// against the clients' `max_response_bytes`; dropping it before the end
/// aborts the exchange.
#[derive(Debug)]
pub(crate) struct OutboundBody {
    inner: Incoming,
    read: usize,
    max: usize,
}

impl OutboundBody {
    /// The next piece of the body, `None` at its end.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, OutboundError> {
        loop {
            if self.read > self.max {
                return Err(OutboundError::TooLarge { limit: self.max });
            }
            let Some(frame) = self.inner.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|err| OutboundError::Network {
                phase: Phase::Body,
                message: error_chain(&err),
            })?;
            // Trailers carry nothing a plugin reads.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            self.read += data.len();
            if self.read > self.max {
                return Err(OutboundError::TooLarge { limit: self.max });
            }
            return Ok(Some(data));
        }
    }

    /// The whole (rest of the) body, failing with [`OutboundError::TooLarge`]
    /// past `limit` bytes or past `max_response_bytes`, whichever is lower.
    pub(crate) async fn collect(mut self, limit: usize) -> Result<Bytes, OutboundError> {
        let limit = limit.min(self.max);
        let too_large = || OutboundError::TooLarge { limit };
        if self.inner.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Err(too_large());
        }
        let Some(first) = self.next_chunk().await? else {
            return Ok(Bytes::new());
        };
        if first.len() > limit {
            return Err(too_large());
        }
        let Some(second) = self.next_chunk().await? else {
            return Ok(first);
        };
        let mut all = Vec::with_capacity(first.len() + second.len());
        all.extend_from_slice(&first);
        let mut next = Some(second);
        while let Some(chunk) = next {
            if all.len() + chunk.len() > limit {
                return Err(too_large());
            }
            all.extend_from_slice(&chunk);
            next = self.next_chunk().await?;
        }
        Ok(all.into())
    }
}

/// Sends `request` and returns its response head once it arrives.
///
/// The request is checked and assembled before anything is sent: a bad
/// path, header or key is [`OutboundError::InvalidRequest`], a destination
/// `approval` refuses is [`OutboundError::Denied`], both without a
/// connection. `first_byte_timeout` bounds the time until the response
/// head, connecting included. Dropping the returned future aborts the
/// request.
pub(crate) async fn send(
    clients: &HttpClients,
    approval: &Approval,
    request: OutboundRequest,
    first_byte_timeout: Duration,
) -> Result<OutboundResponse, OutboundError> {
    let started = Instant::now();
    let redactor = Redactor::new(&request);
    let mut prepared = prepare(request)?;
    let destination = destination(prepared.uri());
    let Some(route) = gate::route(approval, prepared.uri()) else {
        tracing::warn!(%destination, "request denied: destination not approved");
        return Err(OutboundError::Denied { destination });
    };
    let connection = capture_connection(&mut prepared);
    let sending = clients.send_native(route, prepared);
    let response = match tokio::time::timeout(first_byte_timeout, sending).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Err(client_error(&err, destination, started, &redactor)),
        Err(_) => {
            let phase = if connection.connection_metadata().is_some() {
                Phase::Request
            } else {
                Phase::Connect
            };
            return Err(OutboundError::Timeout {
                phase,
                elapsed: started.elapsed(),
            });
        }
    };
    let (parts, body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    Ok(OutboundResponse {
        status: parts.status.as_u16(),
        headers,
        body: OutboundBody {
            inner: body,
            read: 0,
            max: clients.max_response_bytes(),
        },
    })
}

/// Checks `request` and assembles what goes on the wire.
fn prepare(request: OutboundRequest) -> Result<http::Request<Full<Bytes>>, OutboundError> {
    let OutboundRequest {
        method,
        base_url,
        path,
        headers: plugin_headers,
        extra_headers,
        auth,
        request_id,
        body,
    } = request;
    check_path(&path)?;
    let base = base_url.trim_end_matches('/');
    let base_authority = base
        .parse::<http::Uri>()
        .ok()
        .filter(|uri| uri.scheme().is_some())
        .and_then(|uri| uri.authority().cloned())
        .ok_or_else(|| invalid("the base URL is not an absolute http(s) URL"))?;
    let path = match &auth {
        Auth::Query(name, key) => Zeroizing::new(with_query_key(&path, name, key)),
        _ => Zeroizing::new(path),
    };
    let uri = format!("{base}{}", path.as_str())
        .parse::<http::Uri>()
        .map_err(|_| invalid("the request path is not a valid URI path"))?;
    if uri.authority() != Some(&base_authority) {
        return Err(invalid("the request path names another host"));
    }

    let mut headers = HeaderMap::new();
    for (name, value) in &plugin_headers {
        let (name, value) = parse_header("plugin", name, value)?;
        if !is_framing(&name) {
            headers.append(name, value);
        }
    }
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    let mut extras = Vec::with_capacity(extra_headers.len());
    for (name, value) in &extra_headers {
        let (name, value) = parse_header("extra", name, value)?;
        if !is_framing(&name) {
            headers.remove(&name);
            extras.push((name, value));
        }
    }
    for (name, value) in extras {
        headers.append(name, value);
    }
    let request_id = HeaderValue::from_str(&request_id)
        .map_err(|_| invalid("the request id is not a valid header value"))?;
    headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), request_id);
    match &auth {
        Auth::None | Auth::Query(..) => {}
        Auth::Bearer(key) => {
            let value = Zeroizing::new(format!("Bearer {}", key.expose_secret()));
            headers.insert(header::AUTHORIZATION, key_value(&value)?);
        }
        Auth::Header(name, key) => {
            let name = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|name| !is_framing(name))
                .ok_or_else(|| invalid(format!("the auth header name {name:?} is not usable")))?;
            headers.insert(name, key_value(key.expose_secret())?);
        }
    }
    // Methods whose semantics expect a body say so even when it is empty;
    // a GET or DELETE without one carries no framing (RFC 9110 8.6).
    let expects_body = matches!(
        method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    );
    if !body.is_empty() || expects_body {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }

    let mut prepared = http::Request::new(Full::new(body));
    *prepared.method_mut() = method;
    *prepared.uri_mut() = uri;
    *prepared.headers_mut() = headers;
    Ok(prepared)
}

/// Refuses a path that could leave the base URL's origin or break the
/// request line. The path itself is not repeated: it may carry a query.
fn check_path(path: &str) -> Result<(), OutboundError> {
    let problem = if !path.starts_with('/') {
        "must start with `/`"
    } else if path.starts_with("//") {
        "must not start with `//`"
    } else if path.contains("://") {
        "must not contain `://`"
    } else if path.contains('\\') {
        "must not contain a backslash"
    } else if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        "must not contain control characters or spaces"
    } else if !path.is_ascii() {
        "must be ASCII (other characters percent-encoded)"
    } else {
        return Ok(());
    };
    Err(invalid(format!("the request path {problem}")))
}

/// `path` with the query parameter `name` set to `key` (and any the plugin
/// set by that name dropped).
fn with_query_key(path: &str, name: &str, key: &SecretString) -> String {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut joined = String::from(path);
    let mut separator = '?';
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let pair_name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if percent_decode_str(pair_name).decode_utf8_lossy() == name {
            continue;
        }
        joined.push(separator);
        joined.push_str(pair);
        separator = '&';
    }
    joined.push(separator);
    joined.extend(utf8_percent_encode(name, QUERY_COMPONENT));
    joined.push('=');
    joined.extend(utf8_percent_encode(key.expose_secret(), QUERY_COMPONENT));
    joined
}

fn parse_header(
    whose: &str,
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), OutboundError> {
    let parsed_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        invalid(format!("the {whose} header name {shown:?} is not valid"))
    })?;
    // The value is not repeated: an operator's may be a credential.
    let parsed_value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
        invalid(format!(
            "the value of the {whose} header `{parsed_name}` is not valid"
        ))
    })?;
    Ok((parsed_name, parsed_value))
}

/// A header value holding the key, marked sensitive so HTTP/2 never puts
/// it in a compression table.
fn key_value(text: &str) -> Result<HeaderValue, OutboundError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| invalid("the API key holds characters a header value may not carry"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Hop-by-hop and framing headers, which only the host sets.
fn is_framing(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
    ) || name.starts_with("proxy-")
}

fn invalid(message: impl Into<String>) -> OutboundError {
    OutboundError::InvalidRequest(message.into())
}

/// `host:port` of `uri`, the only part of it an error may show.
fn destination(uri: &http::Uri) -> String {
    let Some(authority) = uri.authority() else {
        return "an unnamed host".into();
    };
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(default_port)
    )
}

fn client_error(
    err: &hyper_util::client::legacy::Error,
    destination: String,
    started: Instant,
    redactor: &Redactor,
) -> OutboundError {
    use std::error::Error as _;
    let phase = if err.is_connect() {
        let mut source = err.source();
        while let Some(inner) = source {
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    // The public-address resolver refused every address.
                    std::io::ErrorKind::PermissionDenied => {
                        tracing::warn!(%destination, "request denied: no public address");
                        return OutboundError::Denied { destination };
                    }
                    std::io::ErrorKind::TimedOut => {
                        return OutboundError::Timeout {
                            phase: Phase::Connect,
                            elapsed: started.elapsed(),
                        };
                    }
                    _ => {}
                }
            }
            source = inner.source();
        }
        Phase::Connect
    } else {
        Phase::Request
    };
    OutboundError::Network {
        phase,
        message: redactor.redact(format!("{destination}: {}", error_chain(err))),
    }
}

/// An error and its sources, outermost first.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

/// Removes the key and the query from error messages, should a library's
/// message ever quote them.
struct Redactor {
    secrets: Vec<Zeroizing<String>>,
}

impl Redactor {
    fn new(request: &OutboundRequest) -> Self {
        let mut secrets = Vec::new();
        if let Some(key) = request.auth.key() {
            let key = key.expose_secret();
            secrets.push(Zeroizing::new(
                utf8_percent_encode(key, QUERY_COMPONENT).to_string(),
            ));
            secrets.push(Zeroizing::new(key.to_owned()));
        }
        if let Some((_, query)) = request.path.split_once('?') {
            secrets.push(Zeroizing::new(query.to_owned()));
        }
        secrets.retain(|secret| !secret.is_empty());
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Self { secrets }
    }

    fn redact(&self, mut message: String) -> String {
        for secret in &self.secrets {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "[redacted]");
            }
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    const KEY: &str = "sk-test-Zq8&Key=/+?";
    const WAIT: Duration = Duration::from_secs(10);

    /// What the test server saw on one connection.
    #[derive(Debug)]
    enum Seen {
        Request(Recorded),
        /// The client closed the connection.
        Closed,
    }

    /// One request as it came over the wire.
    #[derive(Debug)]
    struct Recorded {
        /// The request line, e.g. `POST /v1/chat HTTP/1.1`.
        line: String,
        /// Header lines as sent.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Recorded {
        fn all(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        }

        fn header(&self, name: &str) -> Option<&str> {
            match self.all(name).as_slice() {
                [] => None,
                [one] => Some(one),
                many => panic!("{name} sent {} times: {many:?}", many.len()),
            }
        }

        fn target(&self) -> &str {
            self.line.split(' ').nth(1).expect("request target")
        }
    }

    /// A raw HTTP/1.1 server on loopback that records each request head
    /// byte for byte, answers every connection with the same bytes (none
    /// at all for a server that hangs), then reports when the client
    /// closes the connection.
    struct RawServer {
        addr: SocketAddr,
        seen: mpsc::UnboundedReceiver<Seen>,
        accepted: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for RawServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl RawServer {
        async fn start(answer: &[u8]) -> RawServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let (tx, seen) = mpsc::unbounded_channel();
            let accepted = Arc::new(AtomicUsize::new(0));
            let counter = accepted.clone();
            let answer = answer.to_vec();
            let task = tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((socket, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve(socket, answer.clone(), tx.clone()));
                }
            });
            RawServer {
                addr,
                seen,
                accepted,
                task,
            }
        }

        fn origin(&self) -> String {
            format!("http://{}", self.addr)
        }

        fn approval(&self) -> Approval {
            Approval {
                declared_hosts: Vec::new(),
                explicit_origin: Some(self.origin()),
                refusal: None,
            }
        }

        fn connections(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        async fn next(&mut self) -> Seen {
            tokio::time::timeout(WAIT, self.seen.recv())
                .await
                .expect("the server saw something in time")
                .expect("the server runs")
        }

        /// The next request, skipping the ends of earlier connections.
        async fn request(&mut self) -> Recorded {
            loop {
                if let Seen::Request(recorded) = self.next().await {
                    return recorded;
                }
            }
        }
    }

    async fn serve(mut socket: TcpStream, answer: Vec<u8>, tx: mpsc::UnboundedSender<Seen>) {
        if let Some(recorded) = read_request(&mut socket).await {
            let _ = tx.send(Seen::Request(recorded));
            if socket.write_all(&answer).await.is_ok() {
                let mut rest = [0u8; 1024];
                while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
            }
        }
        let _ = tx.send(Seen::Closed);
    }

    async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
        let mut bytes = Vec::new();
        let mut piece = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = socket.read(&mut piece).await.ok().filter(|&n| n > 0)?;
            bytes.extend_from_slice(&piece[..n]);
        };
        let head = String::from_utf8(bytes[..head_end].to_vec()).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let line = lines.next()?.to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = bytes[head_end + 4..].to_vec();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while body.len() < length {
            let n = socket.read(&mut piece).await.ok().filter(|&n| n > 0)?;
            body.extend_from_slice(&piece[..n]);
        }
        Some(Recorded {
            line,
            headers,
            body,
        })
    }

    fn ok_with(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn clients() -> HttpClients {
        HttpClients::new(Duration::from_secs(2), 1024, 16)
    }

    fn request(server: &RawServer, path: &str) -> OutboundRequest {
        OutboundRequest {
            method: http::Method::POST,
            base_url: format!("{}/v1/", server.origin()),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            extra_headers: Vec::new(),
            auth: Auth::None,
            request_id: "req-7f3a".into(),
            body: Bytes::from_static(b"{\"model\":\"m\"}"),
        }
    }

    fn key() -> SecretString {
        SecretString::from(KEY)
    }

    async fn send_to(server: &RawServer, request: OutboundRequest) -> OutboundResponse {
        send(&clients(), &server.approval(), request, WAIT)
            .await
            .expect("sent")
    }

    async fn refused(server: &RawServer, request: OutboundRequest) -> OutboundError {
        send(&clients(), &server.approval(), request, WAIT)
            .await
            .expect_err("refused")
    }

    #[tokio::test]
    async fn a_body_goes_out_sized_with_user_agent_and_request_id() {
        let mut server = RawServer::start(&ok_with("{}")).await;
        let response = send_to(&server, request(&server, "/chat/completions")).await;
        assert_eq!(response.status, 200);
        let seen = server.request().await;
        assert_eq!(seen.line, "POST /v1/chat/completions HTTP/1.1");
        assert_eq!(seen.body, b"{\"model\":\"m\"}");
        assert_eq!(seen.header("content-length"), Some("13"));
        assert_eq!(seen.header("transfer-encoding"), None);
        assert_eq!(
            seen.header("user-agent"),
            Some(concat!("llmhost/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(seen.header("x-client-request-id"), Some("req-7f3a"));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("host"), Some(&*server.addr.to_string()));
    }

    #[tokio::test]
    async fn an_empty_post_says_so_and_a_get_carries_no_framing() {
        let mut server = RawServer::start(&ok_with("{}")).await;
        let empty_post = OutboundRequest {
            body: Bytes::new(),
            ..request(&server, "/reset")
        };
        send_to(&server, empty_post).await;
        let seen = server.request().await;
        assert_eq!(seen.header("content-length"), Some("0"));
        assert_eq!(seen.header("transfer-encoding"), None);

        let get = OutboundRequest {
            method: http::Method::GET,
            body: Bytes::new(),
            ..request(&server, "/models?limit=1000")
        };
        send_to(&server, get).await;
        let seen = server.request().await;
        assert_eq!(seen.line, "GET /v1/models?limit=1000 HTTP/1.1");
        assert_eq!(seen.header("content-length"), None);
        assert_eq!(seen.header("transfer-encoding"), None);
    }

    #[tokio::test]
    async fn plugin_hop_by_hop_and_framing_headers_are_dropped() {
        let mut server = RawServer::start(&ok_with("{}")).await;
        let mut hostile = request(&server, "/chat");
        for (name, value) in [
            ("Host", "evil.example"),
            ("content-length", "999"),
            ("transfer-encoding", "chunked"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("proxy-authorization", "Basic cHJveHk="),
            ("Proxy-Connection", "keep-alive"),
            ("x-kept", "yes"),
        ] {
            hostile.headers.push((name.into(), value.into()));
        }
        send_to(&server, hostile).await;
        let seen = server.request().await;
        assert_eq!(seen.header("host"), Some(&*server.addr.to_string()));
        assert_eq!(seen.header("content-length"), Some("13"));
        assert_eq!(seen.body.len(), 13);
        for name in [
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "proxy-authorization",
            "proxy-connection",
        ] {
            assert_eq!(seen.header(name), None, "{name}");
        }
        assert_eq!(seen.header("x-kept"), Some("yes"));
    }

    #[tokio::test]
    async fn each_auth_scheme_puts_the_key_in_its_place_over_the_plugins() {
        let mut server = RawServer::start(&ok_with("{}")).await;
        let spoofing = |server: &RawServer, auth| OutboundRequest {
            headers: vec![
                ("Authorization".into(), "Bearer plugin".into()),
                ("x-api-key".into(), "plugin".into()),
            ],
            extra_headers: vec![("X-Api-Key".into(), "operator".into())],
            auth,
            ..request(server, "/chat?key=plugin&keyx=1&key%3D=2")
        };

        send_to(&server, spoofing(&server, Auth::Bearer(key()))).await;
        let seen = server.request().await;
        assert_eq!(
            seen.header("authorization"),
            Some(&*format!("Bearer {KEY}"))
        );
        assert_eq!(seen.header("x-api-key"), Some("operator"));
        assert_eq!(seen.target(), "/v1/chat?key=plugin&keyx=1&key%3D=2");

        send_to(
            &server,
            spoofing(&server, Auth::Header("x-api-key".into(), key())),
        )
        .await;
        let seen = server.request().await;
        assert_eq!(seen.header("x-api-key"), Some(KEY));
        assert_eq!(seen.header("authorization"), Some("Bearer plugin"));

        send_to(&server, spoofing(&server, Auth::Query("key".into(), key()))).await;
        let seen = server.request().await;
        assert_eq!(
            seen.target(),
            "/v1/chat?keyx=1&key%3D=2&key=sk-test-Zq8%26Key%3D%2F%2B%3F"
        );
        assert_eq!(seen.header("x-api-key"), Some("operator"));
        assert_eq!(seen.header("authorization"), Some("Bearer plugin"));

        send_to(&server, spoofing(&server, Auth::None)).await;
        let seen = server.request().await;
        assert!(!seen.line.contains(KEY) && !seen.line.contains("sk-test"));
        assert!(seen.headers.iter().all(|(_, v)| !v.contains("sk-test")));
    }

    #[tokio::test]
    async fn extra_headers_replace_the_plugins_and_may_set_the_user_agent() {
        let mut server = RawServer::start(&ok_with("{}")).await;
        let request = OutboundRequest {
            headers: vec![
                ("x-team".into(), "plugin-1".into()),
                ("X-Team".into(), "plugin-2".into()),
                ("user-agent".into(), "plugin/1".into()),
                ("x-tag".into(), "a".into()),
                ("x-tag".into(), "b".into()),
            ],
            extra_headers: vec![
                ("X-TEAM".into(), "ops".into()),
                ("User-Agent".into(), "acme-gateway/2".into()),
            ],
            ..request(&server, "/chat")
        };
        send_to(&server, request).await;
        let seen = server.request().await;
        assert_eq!(seen.header("x-team"), Some("ops"));
        assert_eq!(seen.header("user-agent"), Some("acme-gateway/2"));
        assert_eq!(seen.all("x-tag"), ["a", "b"]);
    }

    #[tokio::test]
    async fn a_plugin_user_agent_gives_way_to_the_hosts() {
        let mut server = RawServer::start(&ok_with("{}")).await;
        let request = OutboundRequest {
            headers: vec![("user-agent".into(), "plugin/1".into())],
            ..request(&server, "/chat")
        };
        send_to(&server, request).await;
        let seen = server.request().await;
        assert_eq!(seen.header("user-agent"), Some(USER_AGENT));
    }

    #[tokio::test]
    async fn bad_paths_and_headers_are_refused_before_any_connection() {
        let server = RawServer::start(&ok_with("{}")).await;
        for path in [
            "chat",
            "",
            "//evil.example/chat",
            "/redirect?to=http://evil.example",
            "/a\\b",
            "/a b",
            "/a\nb",
            "/a\tb",
            "/a\u{7f}",
            "/é",
        ] {
            let err = refused(&server, request(&server, path)).await;
            assert!(
                matches!(&err, OutboundError::InvalidRequest(m) if m.contains("path")),
                "{path:?}: {err:?}"
            );
        }
        let bad_name = OutboundRequest {
            headers: vec![("bad name".into(), "x".into())],
            ..request(&server, "/chat")
        };
        let bad_value = OutboundRequest {
            extra_headers: vec![("x-secret".into(), "line\r\nbreak-hunter2".into())],
            ..request(&server, "/chat")
        };
        let bad_key = OutboundRequest {
            auth: Auth::Bearer(SecretString::from("sk-\nsmuggled")),
            ..request(&server, "/chat")
        };
        let bad_auth_name = OutboundRequest {
            auth: Auth::Header("host".into(), key()),
            ..request(&server, "/chat")
        };
        for bad in [bad_name, bad_value, bad_key, bad_auth_name] {
            let err = refused(&server, bad).await;
            let text = err.to_string();
            assert!(matches!(err, OutboundError::InvalidRequest(_)), "{err:?}");
            assert!(!text.contains("hunter2") && !text.contains("smuggled") && !text.contains(KEY));
        }
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn an_unapproved_destination_is_refused_by_host_and_port_only() {
        let server = RawServer::start(&ok_with("{}")).await;
        let approvals = [
            Approval::default(),
            Approval {
                explicit_origin: Some(format!("http://localhost:{}", server.addr.port())),
                ..Approval::default()
            },
            Approval {
                declared_hosts: vec!["127.0.0.1".into()],
                ..Approval::default()
            },
            Approval {
                refusal: Some("no grant".into()),
                ..server.approval()
            },
        ];
        for approval in approvals {
            let request = OutboundRequest {
                auth: Auth::Query("key".into(), key()),
                ..request(&server, "/chat?session=s3cr3t")
            };
            let err = send(&clients(), &approval, request, WAIT)
                .await
                .expect_err("refused");
            let OutboundError::Denied { destination } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(destination, &server.addr.to_string());
            assert_eq!(
                err.to_string(),
                format!("{} is not an approved destination", server.addr)
            );
        }
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn a_declared_host_that_resolves_to_loopback_is_denied() {
        let request = OutboundRequest {
            method: http::Method::GET,
            base_url: "https://localhost".into(),
            path: "/v1/models".into(),
            headers: Vec::new(),
            extra_headers: Vec::new(),
            auth: Auth::Bearer(key()),
            request_id: "req-1".into(),
            body: Bytes::new(),
        };
        let approval = Approval {
            declared_hosts: vec!["localhost".into()],
            ..Approval::default()
        };
        let err = send(&clients(), &approval, request, WAIT)
            .await
            .expect_err("no public address");
        assert!(
            matches!(&err, OutboundError::Denied { destination } if destination == "localhost:443"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn network_errors_name_the_phase_and_never_the_key_or_query() {
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = closed.local_addr().expect("address");
        drop(closed);
        let request = OutboundRequest {
            method: http::Method::POST,
            base_url: format!("http://{addr}/v1"),
            path: "/chat?session=s3cr3t".into(),
            headers: Vec::new(),
            extra_headers: Vec::new(),
            auth: Auth::Query("key".into(), key()),
            request_id: "req-1".into(),
            body: Bytes::from_static(b"{}"),
        };
        assert!(!format!("{request:?}").contains(KEY));
        let approval = Approval {
            explicit_origin: Some(format!("http://{addr}")),
            ..Approval::default()
        };
        let err = send(&clients(), &approval, request, WAIT)
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(&err, OutboundError::Network { phase: Phase::Connect, message } if message.starts_with(&addr.to_string())),
            "{err:?}"
        );
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("sk-test") && !text.contains("Zq8"), "{text}");
            assert!(
                !text.contains("s3cr3t") && !text.contains("/chat"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_redactor_removes_the_key_in_both_forms_and_the_query() {
        let request = OutboundRequest {
            method: http::Method::GET,
            base_url: "http://127.0.0.1:1".into(),
            path: "/chat?session=s3cr3t".into(),
            headers: Vec::new(),
            extra_headers: Vec::new(),
            auth: Auth::Query("key".into(), key()),
            request_id: "r".into(),
            body: Bytes::new(),
        };
        let redacted = Redactor::new(&request).redact(format!(
            "GET /chat?session=s3cr3t&key=sk-test-Zq8%26Key%3D%2F%2B%3F with {KEY}"
        ));
        assert_eq!(
            redacted,
            "GET /chat?[redacted]&key=[redacted] with [redacted]"
        );
    }

    #[tokio::test]
    async fn a_silent_server_hits_the_first_byte_timeout() {
        let server = RawServer::start(b"").await;
        let limit = Duration::from_millis(300);
        let err = send(
            &clients(),
            &server.approval(),
            request(&server, "/chat"),
            limit,
        )
        .await
        .expect_err("no answer");
        let OutboundError::Timeout { phase, elapsed } = err else {
            panic!("{err:?}");
        };
        assert_eq!(phase, Phase::Request);
        assert!(elapsed >= limit && elapsed < WAIT, "{elapsed:?}");
    }

    #[tokio::test]
    async fn response_headers_come_lowercase_and_lossy() {
        let server = RawServer::start(
            b"HTTP/1.1 201 Created\r\nX-Request-ID: req_9\r\nx-odd: caf\xE9\r\ncontent-length: 2\r\n\r\nok",
        )
        .await;
        let response = send_to(&server, request(&server, "/chat")).await;
        assert_eq!(response.status, 201);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("x-request-id").as_deref(), Some("req_9"));
        assert_eq!(header("x-odd").as_deref(), Some("caf\u{fffd}"));
        assert_eq!(response.body.collect(16).await.expect("body"), "ok");
    }

    #[tokio::test]
    async fn bodies_are_capped_by_the_clients_and_by_the_caller() {
        let big = "x".repeat(2000);
        let server = RawServer::start(&ok_with(&big)).await;
        let response = send_to(&server, request(&server, "/chat")).await;
        let err = response.body.collect(usize::MAX).await.expect_err("capped");
        assert!(
            matches!(err, OutboundError::TooLarge { limit: 1024 }),
            "{err:?}"
        );

        let mut response = send_to(&server, request(&server, "/chat")).await;
        let mut read = 0;
        let err = loop {
            match response.body.next_chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => panic!("read {read} bytes past the cap"),
                Err(err) => break err,
            }
        };
        assert!(
            matches!(err, OutboundError::TooLarge { limit: 1024 }),
            "{err:?}"
        );
        assert!(read <= 1024);

        let small = RawServer::start(&ok_with(&"y".repeat(200))).await;
        let response = send_to(&small, request(&small, "/chat")).await;
        let err = response.body.collect(100).await.expect_err("capped");
        assert!(
            matches!(err, OutboundError::TooLarge { limit: 100 }),
            "{err:?}"
        );
        let response = send_to(&small, request(&small, "/chat")).await;
        assert_eq!(response.body.collect(200).await.expect("fits").len(), 200);
    }

    #[tokio::test]
    async fn a_chunked_body_arrives_in_pieces() {
        let server = RawServer::start(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        let response = send_to(&server, request(&server, "/chat")).await;
        assert_eq!(
            response.body.collect(64).await.expect("body"),
            "hello world"
        );
    }

    #[tokio::test]
    async fn dropping_the_send_future_closes_the_upstream_connection() {
        let mut server = RawServer::start(b"").await;
        let clients = clients();
        let approval = server.approval();
        let sending = send(&clients, &approval, request(&server, "/chat"), WAIT);
        assert_send(&sending);
        tokio::select! {
            sent = sending => panic!("the server never answers: {sent:?}"),
            seen = server.next() => assert!(matches!(seen, Seen::Request(_)), "{seen:?}"),
        }
        // `sending` was dropped when `select!` finished.
        assert!(matches!(server.next().await, Seen::Closed));
    }

    #[tokio::test]
    async fn dropping_the_body_closes_the_upstream_connection() {
        let mut server =
            RawServer::start(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\ndata: first\n\n")
                .await;
        let mut response = send_to(&server, request(&server, "/chat")).await;
        assert!(matches!(server.next().await, Seen::Request(_)));
        let chunk = response.body.next_chunk().await.expect("chunk");
        assert_eq!(chunk.as_deref(), Some(&b"data: first\n\n"[..]));
        drop(response);
        assert!(matches!(server.next().await, Seen::Closed));
    }

    #[tokio::test]
    async fn a_strict_vendor_server_accepts_what_the_host_sends() {
        use llmhost_simulator::{Simulator, Vendor};
        let sim = Simulator::start().await.expect("simulator");
        sim.set_reject_chunked(true);
        let base_url = sim.base_url(Vendor::OpenAi);
        let origin = format!("http://{}", sim.addr());
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hi"}],
        })
        .to_string();
        let request = OutboundRequest {
            method: http::Method::POST,
            base_url,
            path: "/chat/completions".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            extra_headers: Vec::new(),
            auth: Auth::Bearer(key()),
            request_id: "req-sim".into(),
            body: Bytes::from(body.clone()),
        };
        let approval = Approval {
            explicit_origin: Some(origin),
            ..Approval::default()
        };
        let clients = HttpClients::new(Duration::from_secs(2), 1 << 20, 16);
        let response = send(&clients, &approval, request, WAIT)
            .await
            .expect("sent");
        assert_eq!(response.status, 200);
        let answer: serde_json::Value =
            serde_json::from_slice(&response.body.collect(1 << 20).await.expect("body"))
                .expect("JSON");
        assert_eq!(answer["object"], "chat.completion");
        let recorded = sim.requests();
        let content_length = body.len().to_string();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].header("content-length"), Some(&*content_length));
        assert_eq!(recorded[0].header("transfer-encoding"), None);
        assert_eq!(recorded[0].header("x-client-request-id"), Some("req-sim"));
    }

    fn assert_send<T: Send>(_: &T) {}
}
