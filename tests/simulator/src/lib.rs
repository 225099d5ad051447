//! A loopback HTTP server that impersonates LLM vendors' HTTP APIs, wire-exact.
//!
//! It has one job: let llmhost talk to "a vendor" with no keys and no network.
//! `llmhost demo` runs it in-process, `llmhost simulate --listen ADDR` serves it
//! for users' offline tests, and the integration tests script it per test.
//! Responses follow the vendors' real protocols (JSON shapes, SSE framing,
//! error bodies, headers), so a provider plugin that works against the
//! simulator works against the vendor.
//!
//! Each vendor is served under its own path prefix (`/openai/v1/...`,
//! `/deepseek/...`, `/xai/v1/...`, `/anthropic/v1/...`), so one simulator
//! stands in for every vendor at once. Unscripted requests get a
//! deterministic default answer; [`Simulator::enqueue`] overrides the next
//! chat response with any [`Reply`], down to raw bytes and timing.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use llmhost_simulator::{Reply, Simulator, Vendor};
//!
//! let sim = Simulator::start().await?;
//! sim.enqueue(Vendor::OpenAi, Reply::openai_error(429, "requests", None, "Rate limit reached"));
//! let base = sim.base_url(Vendor::OpenAi); // http://127.0.0.1:PORT/openai/v1
//! // ... point a client at `base`, then inspect `sim.requests()`.
//! # Ok(()) }
//! ```

mod anthropic;
mod deepseek;
mod ids;
mod openai;
mod reply;
mod server;
mod tokens;
mod xai;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use anthropic::{anthropic_error_event, anthropic_models, anthropic_stream_events};
pub use deepseek::{DeepSeekQuirks, deepseek_completion, deepseek_models, deepseek_stream_events};
pub use openai::openai_models;
pub use reply::{Reply, sse_data, sse_event};
pub use server::RecordedRequest;
pub use xai::xai_models;

use server::Shared;

/// A vendor whose HTTP API the simulator speaks.
///
/// Each vendor lives under its own first path segment ([`Vendor::prefix`]),
/// followed by the path the real vendor uses.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// OpenAI chat completions, served under `/openai/v1`.
    OpenAi,
    /// DeepSeek's OpenAI-compatible API, served under `/deepseek` (its real
    /// base `https://api.deepseek.com` has no `/v1`, though it accepts one).
    DeepSeek,
    /// xAI's OpenAI-compatible Grok API, served under `/xai/v1`.
    XAi,
    /// Anthropic's Messages API, served under `/anthropic` (its real base
    /// `https://api.anthropic.com` has no `/v1`: the paths carry it).
    Anthropic,
}

impl Vendor {
    /// Every simulated vendor.
    pub const ALL: &'static [Vendor] = &[
        Vendor::OpenAi,
        Vendor::DeepSeek,
        Vendor::XAi,
        Vendor::Anthropic,
    ];

    /// The first path segment that selects this vendor.
    pub fn prefix(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::DeepSeek => "deepseek",
            Vendor::XAi => "xai",
            Vendor::Anthropic => "anthropic",
        }
    }

    /// The path of the vendor's API root, as in its real base URL
    /// (`https://api.openai.com/v1` → `/v1`).
    fn api_root(self) -> &'static str {
        match self {
            Vendor::OpenAi | Vendor::XAi => "/v1",
            Vendor::DeepSeek | Vendor::Anthropic => "",
        }
    }

    /// Whether `path` (below the prefix) is this vendor's chat endpoint, the
    /// one that scripted replies stand in for.
    fn is_chat_path(self, path: &str) -> bool {
        match self {
            Vendor::OpenAi | Vendor::XAi => path == openai::CHAT_PATH,
            Vendor::DeepSeek => deepseek::is_chat_path(path),
            Vendor::Anthropic => path == anthropic::MESSAGES_PATH,
        }
    }

    /// Splits a request path into the vendor it addresses and the vendor's
    /// own path (`/openai/v1/models` → `(OpenAi, "/v1/models")`).
    fn route(path: &str) -> Option<(Vendor, &str)> {
        let trimmed = path.strip_prefix('/')?;
        let (first, rest) = match trimmed.find('/') {
            Some(i) => trimmed.split_at(i),
            None => (trimmed, ""),
        };
        let vendor = Vendor::ALL.iter().copied().find(|v| v.prefix() == first)?;
        Some((vendor, if rest.is_empty() { "/" } else { rest }))
    }
}

/// A running simulator: an HTTP/1.1 server on its own tokio task.
///
/// Dropping it stops the server and closes every connection it holds open,
/// including replies that [hang](Reply::hang).
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a port picked by the OS.
    pub async fn start() -> std::io::Result<Simulator> {
        Simulator::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts a simulator listening on `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(server::run(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, "simulator listening");
        Ok(Simulator { addr, shared, task })
    }

    /// The address the server is listening on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client of `vendor` should use, the counterpart of the
    /// vendor's real one: OpenAI `http://127.0.0.1:PORT/openai/v1`, DeepSeek
    /// `.../deepseek`, xAI `.../xai/v1`, Anthropic `.../anthropic`.
    pub fn base_url(&self, vendor: Vendor) -> String {
        format!(
            "http://{}/{}{}",
            self.addr,
            vendor.prefix(),
            vendor.api_root()
        )
    }

    /// Queues `reply` for `vendor`'s chat endpoint. Queued replies are used
    /// first-in first-out, one per request, in place of the default answer;
    /// they are sent as-is, without checking the request's key or body.
    pub fn enqueue(&self, vendor: Vendor, reply: Reply) {
        self.shared.enqueue(vendor, reply);
    }

    /// How many queued replies for `vendor` have not been used yet.
    pub fn pending(&self, vendor: Vendor) -> usize {
        self.shared.pending(vendor)
    }

    /// Every request received so far, in arrival order, whatever its path.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// How many TCP connections the server has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Sets the pause before each piece of the simulator's own streamed
    /// answers (scripted replies use [`Reply::delay_each`] instead).
    /// Zero by default; the demo sets a few milliseconds so text visibly
    /// streams.
    pub fn set_stream_delay(&self, delay: Duration) {
        self.shared.set_stream_delay(delay);
    }

    /// Sets the pause before the head of every chat answer from now on,
    /// the simulator's own and scripted ones alike (on top of a scripted
    /// reply's own [`Reply::delay_headers`]): a slow vendor, for time to
    /// first token. Zero by default.
    pub fn set_answer_delay(&self, delay: Duration) {
        self.shared.set_answer_delay(delay);
    }

    /// Sets the DeepSeek quirks the simulator's own DeepSeek answers show
    /// from now on (none by default). Scripted replies are unaffected; to
    /// script one answer with quirks, see [`deepseek_stream_events`] and
    /// [`deepseek_completion`].
    pub fn set_deepseek_quirks(&self, quirks: DeepSeekQuirks) {
        self.shared.set_deepseek_quirks(quirks);
    }

    /// Makes the server strict about request framing, as some servers and
    /// proxies in front of vendor APIs are: when on, a request whose body
    /// comes with `transfer-encoding: chunked` is answered `411 Length
    /// Required` with an OpenAI-shaped error body
    /// (`{"error":{"message":..,"type":"invalid_request_error","param":null,"code":"length_required"}}`)
    /// and never reaches a vendor or a scripted reply; it is still recorded.
    /// Off by default.
    pub fn set_reject_chunked(&self, reject: bool) {
        self.shared.set_reject_chunked(reject);
    }

    /// Serves until ctrl-c, for `llmhost simulate`. Requests are no longer
    /// recorded, since nobody is left to read them.
    pub async fn serve_forever(mut self) {
        self.shared.stop_recording();
        tokio::select! {
            _ = &mut self.task => {}
            signal = tokio::signal::ctrl_c() => {
                if let Err(err) = signal {
                    // No signal handler means no way to be interrupted here:
                    // keep serving until the process is killed.
                    tracing::warn!(%err, "cannot listen for ctrl-c");
                    let _ = (&mut self.task).await;
                }
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_vendor_prefix() {
        assert_eq!(
            Vendor::route("/openai/v1/chat/completions"),
            Some((Vendor::OpenAi, "/v1/chat/completions"))
        );
        assert_eq!(Vendor::route("/openai"), Some((Vendor::OpenAi, "/")));
        assert_eq!(
            Vendor::route("/deepseek/chat/completions"),
            Some((Vendor::DeepSeek, "/chat/completions"))
        );
        assert_eq!(
            Vendor::route("/anthropic/v1/messages"),
            Some((Vendor::Anthropic, "/v1/messages"))
        );
        assert_eq!(
            Vendor::route("/xai/v1/models"),
            Some((Vendor::XAi, "/v1/models"))
        );
        assert_eq!(Vendor::route("/openaix/v1"), None);
        assert_eq!(Vendor::route("/"), None);
        assert_eq!(Vendor::route(""), None);
    }
}
