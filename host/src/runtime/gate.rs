//! The HTTP gate: every outgoing request of a plugin passes here. A request
//! leaves only for a host the plugin is approved for, through one shared,
//! pooled client, with the response size capped. Contract 0.1 plugins reach
//! it through `wasi:http` ([`RequestGate`]); the host's own sends for
//! contract 0.2 plugins (`super::outbound`) apply the same [`route`].
//!
//! Approval: the hosts the plugin was granted (for a built-in, those it
//! declares; for a plugin file, those it asks for that the operator
//! granted at install): HTTPS on port 443 only, and only to public
//! addresses, whether a name resolves to them or the host is an address
//! literal. Plus the base URL the operator configured explicitly, matched
//! on scheme, host and port (any address: local models and the simulator
//! live on loopback).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::{Client, ResponseFuture};
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
    /// Hosts granted to the plugin (HTTPS, public addresses).
    pub declared_hosts: Vec<String>,
    /// `scheme://host:port` of a base URL the operator set explicitly.
    pub explicit_origin: Option<String>,
    /// Why nothing at all is approved, when nothing is.
    pub refusal: Option<String>,
}

impl Approval {
    fn describe(&self) -> String {
        if let Some(refusal) = &self.refusal {
            return refusal.clone();
        }
        let mut all: Vec<String> = self.declared_hosts.clone();
        if let Some(origin) = &self.explicit_origin {
            all.push(origin.clone());
        }
        if all.is_empty() {
            "none".into()
        } else {
            all.join(", ")
        }
    }
}

/// The process-wide clients behind the gate: one pair for the request body
/// type of `wasi:http`, one for the host's own sized bodies. Each pair has a
/// client for declared hosts and one for an explicitly configured base URL.
pub struct HttpClients {
    /// For declared hosts: resolves only to public addresses.
    public: Client<HttpsConnector<PublicResolver>, WasiBody>,
    /// For an explicitly configured base URL: any address.
    configured: Client<HttpsConnector<GaiResolver>, WasiBody>,
    /// The host's own requests to declared hosts.
    native_public: Client<HttpsConnector<PublicResolver>, Full<Bytes>>,
    /// The host's own requests to an explicitly configured base URL.
    native_configured: Client<HttpsConnector<GaiResolver>, Full<Bytes>>,
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
        let public = tls(public_http);
        let configured = tls(configured_http);
        Self {
            native_public: builder().build(public.clone()),
            native_configured: builder().build(configured.clone()),
            public: builder().build(public),
            configured: builder().build(configured),
            max_response_bytes,
            max_requests,
        }
    }

    /// The most bytes any one response body may deliver.
    pub(crate) fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Sends one of the host's own requests down the client of `route`.
    pub(crate) fn send_native(
        &self,
        route: Route,
        request: http::Request<Full<Bytes>>,
    ) -> ResponseFuture {
        match route {
            Route::Public => self.native_public.request(request),
            Route::Configured => self.native_configured.request(request),
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

/// Which client an approved destination goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A declared (granted) host: HTTPS on 443, public addresses only.
    Public,
    /// The operator's explicitly configured base URL: any address.
    Configured,
}

/// Where `approval` lets a request for `uri` go, or `None` when it is
/// refused: the one rule for every outgoing request of a plugin.
pub(crate) fn route(approval: &Approval, uri: &http::Uri) -> Option<Route> {
    if approval.refusal.is_some() {
        return None;
    }
    let authority = uri.authority()?;
    let scheme = uri.scheme_str()?;
    let https = scheme.eq_ignore_ascii_case("https");
    if !https && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let default_port = if https { 443 } else { 80 };
    let origin = format!(
        "{}://{}:{}",
        if https { "https" } else { "http" },
        authority.host(),
        authority.port_u16().unwrap_or(default_port)
    );
    if let Some(explicit) = &approval.explicit_origin
        && explicit.eq_ignore_ascii_case(&origin)
    {
        return Some(Route::Configured);
    }
    let host = authority.host();
    // An address literal never goes through the resolver, so it must
    // pass the public-address rule here.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip)) {
        return None;
    }
    let declared = approval
        .declared_hosts
        .iter()
        .any(|d| d.eq_ignore_ascii_case(host));
    (declared && https && authority.port_u16().is_none_or(|p| p == 443)).then_some(Route::Public)
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
        let Some(route) = route(&self.approval, request.uri()) else {
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

/// Whether an address is on the public internet: not loopback, private,
/// link-local, shared (CGNAT), multicast, reserved, documentation or
/// benchmarking space, and not an IPv6 form that embeds or translates to
/// an IPv4 address (mapped, compatible, NAT64, 6to4), whose real
/// destination is decided elsewhere.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embeds_v4 = v6.to_ipv4_mapped().is_some()
                // ::a.b.c.d (IPv4-compatible, deprecated)
                || (s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified())
                // NAT64: 64:ff9b::/96 and 64:ff9b:1::/48
                || (s[0] == 0x64 && s[1] == 0xff9b)
                // 6to4: 2002::/16
                || s[0] == 0x2002;
            !(embeds_v4
                || v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                // site-local, deprecated but still routed by some stacks
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] & 0xff00) == 0xff00
                // documentation: 2001:db8::/32
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(declared: &[&str], explicit: Option<&str>) -> Approval {
        Approval {
            declared_hosts: declared.iter().map(|s| s.to_string()).collect(),
            explicit_origin: explicit.map(str::to_owned),
            refusal: None,
        }
    }

    fn routed(approval: &Approval, uri: &str) -> bool {
        route(approval, &uri.parse().expect("uri")).is_some()
    }

    #[test]
    fn declared_hosts_need_https_on_the_default_port() {
        let allowed = approval(&["api.openai.com"], None);
        assert_eq!(
            route(&allowed, &"https://api.openai.com/v1".parse().expect("uri")),
            Some(Route::Public)
        );
        assert!(routed(
            &allowed,
            "https://api.openai.com/v1/chat/completions"
        ));
        assert!(routed(&allowed, "https://API.OPENAI.COM:443/v1"));
        assert!(!routed(&allowed, "http://api.openai.com/v1"));
        assert!(!routed(&allowed, "https://api.openai.com:8443/v1"));
        assert!(!routed(&allowed, "https://evil.example/v1"));
        assert!(!routed(&allowed, "https://127.0.0.1/v1"));
    }

    #[test]
    fn explicit_base_url_is_matched_with_its_scheme_and_port() {
        let allowed = approval(&[], Some("http://127.0.0.1:8080"));
        assert_eq!(
            route(&allowed, &"http://127.0.0.1:8080/v1".parse().expect("uri")),
            Some(Route::Configured)
        );
        assert!(routed(&allowed, "http://127.0.0.1:8080/v1"));
        assert!(!routed(&allowed, "http://127.0.0.1:8081/v1"));
        assert!(!routed(&allowed, "http://localhost:8080/v1"));
        assert!(!routed(&allowed, "https://127.0.0.1:8080/v1"));
        let allowed = approval(&[], Some("https://proxy.example:443"));
        assert!(routed(&allowed, "https://proxy.example/v1"));
        assert!(!routed(&allowed, "http://proxy.example:443/v1"));
    }

    #[test]
    fn declared_address_literals_must_be_public() {
        let allowed = approval(&["127.0.0.1", "169.254.169.254", "[::1]", "8.8.8.8"], None);
        assert!(!routed(&allowed, "https://127.0.0.1/v1"));
        assert!(!routed(
            &allowed,
            "https://169.254.169.254/latest/meta-data"
        ));
        assert!(!routed(&allowed, "https://[::1]/v1"));
        assert!(routed(&allowed, "https://8.8.8.8/v1"));
    }

    #[test]
    fn a_plugin_without_a_grant_reaches_nothing() {
        let allowed = Approval {
            refusal: Some("nothing".into()),
            ..approval(&["api.example.com"], Some("http://127.0.0.1:8080"))
        };
        assert!(!routed(&allowed, "https://api.example.com/v1"));
        assert!(!routed(&allowed, "http://127.0.0.1:8080/v1"));
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
            "64:ff9b::a00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "::10.0.0.1",
            "::8.8.8.8",
            "2002:a00:1::1",
            "fec0::1",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.0.8",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "104.18.6.192", "2606:4700::6810:7b0"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }
}
