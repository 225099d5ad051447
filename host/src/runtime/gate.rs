//! The HTTP gate: every outgoing request of a plugin passes here. A request
//! leaves only for a host the plugin is approved for, through one shared,
//! pooled client, with the response size capped.
//!
//! Approval: the hosts the plugin declares in its `provider-info` (HTTPS
//! only, and only if their DNS answers are public addresses), plus the
//! base URL the operator configured explicitly (any scheme, loopback and
//! private addresses allowed: local models and the simulator live there).

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

type HttpsConnector<R> = hyper_rustls::HttpsConnector<HttpConnector<R>>;

/// Where a plugin may send requests during one call.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    /// Host names from the plugin's manifest (HTTPS, public addresses).
    pub declared_hosts: Vec<String>,
    /// `host:port` of a base URL the operator set explicitly.
    pub explicit_authority: Option<String>,
}

impl Approval {
    fn describe(&self) -> String {
        let mut all: Vec<String> = self.declared_hosts.clone();
        if let Some(authority) = &self.explicit_authority {
            all.push(authority.clone());
        }
        if all.is_empty() {
            "none".into()
        } else {
            all.join(", ")
        }
    }
}

/// The process-wide clients behind the gate.
pub struct HttpClients {
    /// For declared hosts: resolves only to public addresses.
    public: Client<HttpsConnector<PublicResolver>, WasiBody>,
    /// For an explicitly configured base URL: any address.
    configured:
        Client<HttpsConnector<hyper_util::client::legacy::connect::dns::GaiResolver>, WasiBody>,
    max_response_bytes: usize,
    max_requests: u32,
}

impl HttpClients {
    /// Builds the pooled clients.
    pub fn new(connect_timeout: Duration, max_response_bytes: usize, max_requests: u32) -> Self {
        let mut public_http = HttpConnector::new_with_resolver(PublicResolver);
        public_http.enforce_http(false);
        public_http.set_connect_timeout(Some(connect_timeout));
        public_http.set_nodelay(true);
        let mut configured_http = HttpConnector::new();
        configured_http.enforce_http(false);
        configured_http.set_connect_timeout(Some(connect_timeout));
        configured_http.set_nodelay(true);
        let builder = || {
            let mut builder = Client::builder(TokioExecutor::new());
            builder.pool_idle_timeout(Duration::from_secs(90));
            builder
        };
        Self {
            public: builder().build(tls(public_http)),
            configured: builder().build(tls(configured_http)),
            max_response_bytes,
            max_requests,
        }
    }
}

fn tls<R>(http: HttpConnector<R>) -> HttpsConnector<R> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}

/// The hooks of one request's store.
pub struct RequestGate {
    clients: Arc<HttpClients>,
    approval: Arc<Approval>,
    /// Destinations refused during this request.
    pub(super) denied: Vec<String>,
    /// Requests sent by this call.
    sent: u32,
    /// Whether the call tried to send more than its limit.
    pub(super) over_limit: bool,
}

impl RequestGate {
    pub(super) fn new(clients: Arc<HttpClients>, approval: Arc<Approval>) -> Self {
        Self {
            clients,
            approval,
            denied: Vec::new(),
            sent: 0,
            over_limit: false,
        }
    }

    pub(super) fn approval_text(&self) -> String {
        self.approval.describe()
    }
}

enum Route {
    Public,
    Configured,
}

impl RequestGate {
    fn route(&self, uri: &http::Uri) -> Option<Route> {
        let authority = uri.authority()?;
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let default_port = if https { 443 } else { 80 };
        let with_port = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(default_port)
        );
        if let Some(explicit) = &self.approval.explicit_authority
            && explicit.eq_ignore_ascii_case(&with_port)
        {
            return Some(Route::Configured);
        }
        let host = authority.host();
        let declared = self
            .approval
            .declared_hosts
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host));
        (declared && https && authority.port_u16().is_none_or(|p| p == 443))
            .then_some(Route::Public)
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for RequestGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let route = self.route(request.uri());
        let Some(route) = route else {
            let destination = request
                .uri()
                .authority()
                .map_or_else(|| request.uri().to_string(), |a| a.to_string());
            tracing::warn!(%destination, "plugin request denied: host not approved");
            self.denied.push(destination);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        if self.sent >= self.clients.max_requests {
            tracing::warn!(
                limit = self.clients.max_requests,
                "plugin request denied: too many requests in one call"
            );
            self.over_limit = true;
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.sent += 1;
        let clients = self.clients.clone();
        let first_byte = options.and_then(|o| o.first_byte_timeout);
        Box::new(async move {
            let sending = async {
                match route {
                    Route::Public => clients.public.request(request).await,
                    Route::Configured => clients.configured.request(request).await,
                }
            };
            let response = match first_byte {
                Some(limit) => tokio::time::timeout(limit, sending)
                    .await
                    .map_err(|_| wasmtime_wasi_http::Error::ConnectionReadTimeout)?,
                None => sending.await,
            }
            .map_err(map_client_error)?;
            let limit = clients.max_response_bytes;
            let response = response.map(|body| {
                http_body_util::Limited::new(body, limit)
                    .map_err(move |err| {
                        if err.is::<http_body_util::LengthLimitError>() {
                            wasmtime_wasi_http::Error::HttpResponseBodySize(Some(limit as u64))
                        } else {
                            match err.downcast::<hyper::Error>() {
                                Ok(err) => wasmtime_wasi_http::Error::Hyper(*err),
                                Err(err) => {
                                    wasmtime_wasi_http::Error::InternalError(Some(err.to_string()))
                                }
                            }
                        }
                    })
                    .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

fn map_client_error(err: hyper_util::client::legacy::Error) -> wasmtime_wasi_http::Error {
    use std::error::Error as _;
    if err.is_connect() {
        let mut source = err.source();
        while let Some(inner) = source {
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::PermissionDenied {
                    return wasmtime_wasi_http::Error::DestinationIpProhibited;
                }
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return wasmtime_wasi_http::Error::ConnectionTimeout;
                }
            }
            source = inner.source();
        }
        return wasmtime_wasi_http::Error::ConnectionRefused;
    }
    wasmtime_wasi_http::Error::InternalError(Some(err.to_string()))
}

/// Resolves names, keeping only public addresses: a declared host whose
/// DNS points into the private network is refused (DNS rebinding).
#[derive(Clone, Copy, Debug)]
pub struct PublicResolver;

impl tower_service::Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} resolves to no public address", name.as_str()),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xff00) == 0xff00)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(declared: &[&str], explicit: Option<&str>) -> RequestGate {
        RequestGate::new(
            Arc::new(HttpClients::new(Duration::from_secs(1), 1024, 16)),
            Arc::new(Approval {
                declared_hosts: declared.iter().map(|s| s.to_string()).collect(),
                explicit_authority: explicit.map(str::to_owned),
            }),
        )
    }

    fn routed(gate: &RequestGate, uri: &str) -> bool {
        gate.route(&uri.parse().expect("uri")).is_some()
    }

    #[test]
    fn declared_hosts_need_https_on_the_default_port() {
        let gate = gate(&["api.openai.com"], None);
        assert!(routed(&gate, "https://api.openai.com/v1/chat/completions"));
        assert!(routed(&gate, "https://API.OPENAI.COM:443/v1"));
        assert!(!routed(&gate, "http://api.openai.com/v1"));
        assert!(!routed(&gate, "https://api.openai.com:8443/v1"));
        assert!(!routed(&gate, "https://evil.example/v1"));
        assert!(!routed(&gate, "https://127.0.0.1/v1"));
    }

    #[test]
    fn explicit_base_url_is_matched_with_its_port() {
        let gate = gate(&[], Some("127.0.0.1:8080"));
        assert!(routed(&gate, "http://127.0.0.1:8080/v1"));
        assert!(!routed(&gate, "http://127.0.0.1:8081/v1"));
        assert!(!routed(&gate, "http://localhost:8080/v1"));
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "104.18.6.192", "2606:4700::6810:7b0"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }
}
