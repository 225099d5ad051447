//! State shared by several `llmhost serve` replicas, in Redis 7 (or
//! Valkey), when `[shared] redis_url` is set: rate-limit buckets (per
//! virtual key, and per provider, model and API key), budget reservations
//! and spend, and the virtual-key revocation signal. Every change is one
//! atomic server-side operation (a Lua script, or `INCR`), never a read
//! and a write from the client, so replicas cannot race one another.
//! Circuit breakers are shared too: a circuit opened on one replica is
//! open on all within a quarter of a second.
//!
//! Without `redis_url` none of this is used: each process keeps its
//! in-process buckets and ledger, exactly as a single gateway does.
//!
//! When Redis cannot be reached, the gateway fails closed by default:
//! calls with a budget or a rate limit are refused with
//! `shared_state_unavailable` (HTTP 503, `retry-after: 1`), counted in
//! `llmhost_shared_state_unavailable_total` and logged. With
//! `on_unavailable = "open"` they go on under this process's own
//! in-process limits instead. Either way the usage rows are written to the
//! database as always (they are the durable record budgets are seeded
//! from), and the connection is re-made as soon as Redis answers again.
//!
//! `rediss://` URLs connect by TLS (rustls, ring provider). The server's
//! certificate must chain to a public root (webpki's Mozilla roots) or to
//! the CA of `[shared] redis_ca_file` (PEM), and name the URL's host; there
//! is no mode that accepts any certificate, so the `#insecure` fragment is
//! refused. A certificate that is not trusted counts as Redis being
//! unavailable (fail closed or open, as above), with the reason logged and
//! in the error.

mod breakers;
mod buckets;
mod budget;
pub(crate) mod cache;
#[doc(hidden)]
pub mod probe;
pub(crate) mod sessions;
mod tls;

pub(crate) use breakers::SharedCircuits;
pub(crate) use buckets::{BucketSpec, adjust as adjust_bucket, take as take_buckets};
pub(crate) use budget::{BudgetHold, reserve as reserve_budget};

use crate::error::Error;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable with the Redis URL (wins over the file).
pub const REDIS_URL_ENV: &str = "LLMHOST_REDIS_URL";
/// Environment variable naming a PEM file of CA certificates trusted for
/// `rediss://` besides the public roots (wins over the file).
pub const REDIS_CA_FILE_ENV: &str = "LLMHOST_REDIS_CA_FILE";
/// Environment variable with `closed` or `open`.
pub const ON_UNAVAILABLE_ENV: &str = "LLMHOST_SHARED_ON_UNAVAILABLE";

/// How long one Redis operation may take before it counts as Redis being
/// unavailable.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one warning a this often while Redis stays unavailable.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What budgets and rate limits do while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnavailable {
    /// Refuse the calls they govern (`shared_state_unavailable`).
    #[default]
    Closed,
    /// Admit them under this process's in-process limits alone.
    Open,
}

impl OnUnavailable {
    /// `closed` or `open`.
    pub fn parse(text: &str, what: &str) -> Result<Self, Error> {
        match text.trim().to_ascii_lowercase().as_str() {
            "closed" => Ok(Self::Closed),
            "open" => Ok(Self::Open),
            other => Err(Error::InvalidConfig(format!(
                "{what} must be \"closed\" or \"open\", not `{other}`"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// A Redis URL; shown only with its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `[shared]`: where the replicas' shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedSettings {
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS;
    /// `None` keeps all state in-process.
    pub redis_url: Option<RedisUrl>,
    /// PEM file of CA certificates trusted for `rediss://` besides the
    /// public roots.
    pub redis_ca_file: Option<PathBuf>,
    pub on_unavailable: OnUnavailable,
}

/// `url` with the password of its user-info (and any `password=` query
/// parameter) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it may be anything, so show none of it.
        return "***".to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            // A lone user-info may be the password itself.
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) if query.to_ascii_lowercase().contains("pass") => {
            format!("{path}?***")
        }
        _ => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The connection to the shared state, and what it has seen of Redis's
/// availability.
pub struct Redis {
    conn: ConnectionManager,
    shown: String,
    /// The password, to scrub from any error text.
    secret: Option<String>,
    on_unavailable: OnUnavailable,
    up: AtomicBool,
    warned: Mutex<Option<Instant>>,
    /// Operations that failed because Redis was unavailable, by name.
    failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.shown)
            .field("on_unavailable", &self.on_unavailable)
            .finish()
    }
}

impl Redis {
    /// The shared state of `settings`, or `None` without a `redis_url`.
    /// Connects lazily: a gateway starts while Redis is down, and fails
    /// closed (or open) until it answers.
    pub fn connect(settings: &SharedSettings) -> Result<Option<Arc<Self>>, Error> {
        settings
            .redis_url
            .as_ref()
            .map(|url| {
                Self::open(
                    url,
                    settings.redis_ca_file.as_deref(),
                    settings.on_unavailable,
                )
            })
            .transpose()
    }

    /// The shared state at `url`; a `rediss://` URL also trusts the CA
    /// certificates of `ca_file` (PEM).
    pub fn open(
        url: &RedisUrl,
        ca_file: Option<&Path>,
        on_unavailable: OnUnavailable,
    ) -> Result<Arc<Self>, Error> {
        let shown = url.redacted();
        let client = tls::client(url.expose(), &shown, ca_file)?;
        let secret = client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| Error::InvalidConfig(format!("[shared] redis_url `{shown}`: {err}")))?;
        Ok(Arc::new(Self {
            conn,
            shown,
            secret,
            on_unavailable,
            up: AtomicBool::new(true),
            warned: Mutex::new(None),
            failures: Mutex::new(BTreeMap::new()),
        }))
    }

    /// What budgets and limits do while Redis is unavailable.
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.on_unavailable
    }

    /// The server's URL, its password redacted.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Whether the last operation reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// How many operations failed because Redis was unavailable, by
    /// operation.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.iter().map(|(op, n)| (*op, *n)).collect()
    }

    /// Asks Redis whether it answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.run("ping", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// The revocation epoch: raised by every revocation of a virtual key.
    pub(crate) async fn revocation_epoch(&self) -> Result<i64, Error> {
        self.run("revocations", |mut conn| async move {
            redis::cmd("GET")
                .arg(REVOCATIONS_KEY)
                .query_async::<Option<i64>>(&mut conn)
                .await
        })
        .await
        .map(|epoch| epoch.unwrap_or(0))
    }

    /// Tells every replica that a virtual key was revoked.
    pub(crate) async fn announce_revocation(&self) -> Result<i64, Error> {
        self.run("revocations", |mut conn| async move {
            redis::cmd("INCR")
                .arg(REVOCATIONS_KEY)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
    }

    /// Runs `operation` on a connection within the operation timeout; a
    /// failure to reach Redis becomes [`Error::SharedUnavailable`],
    /// counted and logged.
    pub(crate) async fn run<T, F, Fut>(&self, name: &'static str, operation: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let outcome =
            tokio::time::timeout(OPERATION_TIMEOUT * 2, operation(self.conn.clone())).await;
        let why = match outcome {
            Ok(Ok(value)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::warn!(redis = %self.shown, "shared state: Redis answers again");
                }
                return Ok(value);
            }
            Ok(Err(err)) => self.scrub(&tls::explain(&err)),
            Err(_) => format!(
                "no answer within {:.1}s",
                (OPERATION_TIMEOUT * 2).as_secs_f64()
            ),
        };
        Err(self.unavailable(name, &why))
    }

    fn scrub(&self, text: &str) -> String {
        match self.secret.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) => text.replace(secret, "***"),
            None => text.to_owned(),
        }
    }

    fn unavailable(&self, name: &'static str, why: &str) -> Error {
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
        let was_up = self.up.swap(false, Ordering::Relaxed);
        let warn = {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            let due = was_up || warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if due {
                *warned = Some(Instant::now());
            }
            due
        };
        if warn {
            tracing::warn!(
                redis = %self.shown,
                operation = name,
                on_unavailable = self.on_unavailable.as_str(),
                error = why,
                "shared state: Redis is unavailable"
            );
        }
        Error::SharedUnavailable {
            message: format!(
                "the shared state (Redis at {}) is unavailable, so budgets and rate limits \
                 cannot be checked across replicas: {why}; try again shortly",
                self.shown
            ),
        }
    }
}

const REVOCATIONS_KEY: &str = "llmhost:virtual_keys:revocations";

#[cfg(test)]
mod tests;
