//! Configuration: one typed structure from an optional `llmhost.toml`
//! and the environment. Precedence, highest first: command-line flag,
//! environment variable, file, default.
//!
//! ```toml
//! database = "llmhost.db"          # LLMHOST_DB; or postgres://user:pw@host/db?sslmode=require
//! database_pool_size = 8           # LLMHOST_DB_POOL_SIZE: PostgreSQL connections
//! database_ca_file = "/etc/llmhost/db-ca.pem"   # LLMHOST_DB_CA_FILE: CA of the server's TLS certificate
//! plugins = "plugins"              # LLMHOST_PLUGINS
//! cache_dir = "/var/cache/llmhost" # LLMHOST_CACHE_DIR
//! models = "models.toml"           # LLMHOST_MODELS
//! strict_models = false            # LLMHOST_STRICT_MODELS
//! timeout_secs = 120               # LLMHOST_TIMEOUT_SECS
//!
//! [encryption]
//! key_file = "/etc/llmhost/encryption.key"   # LLMHOST_KEY_FILE
//!
//! [limits]
//! memory_mb = 128
//! cpu_secs = 5
//! response_mb = 32
//! connect_timeout_secs = 10
//! max_concurrent_instances = 256
//! max_requests_per_call = 16
//! tokenizer_mb_per_call = 16       # text one tokenizer call may count
//! tokenizer_mb_per_request = 64    # all tokenizer calls of one request
//!
//! [retry]                        # every call: plain targets, agents, the gateway
//! max_attempts = 3                 # per route (provider and model)
//! base_delay_ms = 250              # backoff: doubles, full jitter
//! max_delay_secs = 20
//! deadline_secs = 300              # a whole call, fallbacks included
//! attempt_timeout_secs = 60        # one attempt (default: timeout_secs)
//!
//! [breaker]
//! threshold = 5                    # failures in a row; 0 turns it off
//! cooldown_secs = 30
//!
//! [server]                       # `llmhost serve`
//! listen = "127.0.0.1:4000"        # LLMHOST_LISTEN; --listen wins
//! shutdown_grace_secs = 30         # in-flight requests may finish
//! max_body_mb = 32                 # largest request body
//!
//! [usage]                        # usage rows (hourly sums are kept in a rollup)
//! retain_days = 90                 # delete raw rows older than this (default: keep)
//!
//! [cache]                        # the response cache (agents and keys opt in)
//! max_mb = 64                      # answers kept in memory, least recent out first
//!
//! [shared]                       # state shared by several `llmhost serve` replicas
//! redis_url = "redis://:PASSWORD@10.0.0.5:6379/0"   # LLMHOST_REDIS_URL; unset: in-process
//!                                  # rediss:// for TLS, verified against public roots
//! redis_ca_file = "/etc/llmhost/redis-ca.pem"   # LLMHOST_REDIS_CA_FILE: and this CA (PEM)
//! on_unavailable = "closed"        # LLMHOST_SHARED_ON_UNAVAILABLE; or "open"
//!
//! [providers.openai]
//! base_url = "https://proxy.example.com/v1"   # OPENAI_BASE_URL wins over it
//! allowed_hosts = ["proxy.example.com"]
//! ```
//!
//! PostgreSQL over TLS: the URL's `sslmode` is `disable`, `prefer` (the
//! default: TLS when the server offers it), `require`, `verify-ca` or
//! `verify-full`. Whenever TLS is used the certificate is verified (chain
//! and host name, so every TLS mode is libpq's `verify-full`) against the
//! public roots plus the PEM file of `database_ca_file`, or of
//! `sslrootcert=` in the URL, which wins over it.
//!
//! API keys are never read from this file: they come from the vendors'
//! usual environment variables or from an agent's encrypted config. The
//! gateway's master key likewise comes only from `LLMHOST_MASTER_KEY`.

use crate::error::Error;
use crate::resilience::Resilience;
use crate::runtime::Limits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings file read when none is named.
pub const DEFAULT_FILE: &str = "llmhost.toml";
/// Environment variable naming the settings file.
pub const FILE_ENV: &str = "LLMHOST_CONFIG";
/// Environment variable naming the database.
pub const DB_ENV: &str = "LLMHOST_DB";
/// Environment variable with the PostgreSQL pool size.
pub const DB_POOL_ENV: &str = "LLMHOST_DB_POOL_SIZE";
/// Environment variable naming the CA file of PostgreSQL's TLS certificate.
pub const DB_CA_FILE_ENV: &str = "LLMHOST_DB_CA_FILE";
/// Environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "LLMHOST_KEY_FILE";
/// Environment variable with the default request timeout in seconds.
pub const TIMEOUT_ENV: &str = "LLMHOST_TIMEOUT_SECS";

/// Settings of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Base URL used when neither the call nor the provider's environment
    /// variable sets one.
    pub base_url: Option<String>,
    /// Hosts the plugin may reach (HTTPS, public addresses): for a
    /// built-in provider, besides those it declares; for a plugin file, a
    /// grant like `plugins install --allow-host`, which counts only for
    /// hosts it asks for and only once it is installed.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database: Option<String>,
    database_pool_size: Option<u32>,
    database_ca_file: Option<PathBuf>,
    plugins: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    models: Option<PathBuf>,
    strict_models: Option<bool>,
    timeout_secs: Option<f64>,
    #[serde(default)]
    encryption: FileEncryption,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    retry: FileRetry,
    #[serde(default)]
    breaker: FileBreaker,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    cache: FileCache,
    #[serde(default)]
    shared: FileShared,
    #[serde(default)]
    usage: FileUsage,
    #[serde(default)]
    providers: BTreeMap<String, ProviderSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    shutdown_grace_secs: Option<f64>,
    max_body_mb: Option<u64>,
}

/// Settings of `llmhost serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: std::net::SocketAddr,
    /// How long in-flight requests may run after SIGTERM or Ctrl-C.
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 4000)),
            shutdown_grace: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
        }
    }
}

fn pool_size(size: u32, what: &str) -> Result<u32, Error> {
    if (1..=1024).contains(&size) {
        Ok(size)
    } else {
        Err(Error::InvalidConfig(format!(
            "{what}: {size} connections; give 1 to 1024"
        )))
    }
}

fn listen_address(text: &str, what: &str) -> Result<std::net::SocketAddr, Error> {
    text.parse().map_err(|_| {
        Error::InvalidConfig(format!(
            "{what}: `{text}` is not an address and port such as 127.0.0.1:4000"
        ))
    })
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShared {
    redis_url: Option<String>,
    redis_ca_file: Option<PathBuf>,
    on_unavailable: Option<String>,
}

impl std::fmt::Debug for FileShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileShared")
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::shared::redact),
            )
            .field("redis_ca_file", &self.redis_ca_file)
            .field("on_unavailable", &self.on_unavailable)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUsage {
    retain_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    max_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEncryption {
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    memory_mb: Option<u64>,
    cpu_secs: Option<f64>,
    response_mb: Option<u64>,
    connect_timeout_secs: Option<f64>,
    max_concurrent_instances: Option<u32>,
    max_requests_per_call: Option<u32>,
    tokenizer_mb_per_call: Option<u64>,
    tokenizer_mb_per_request: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    max_attempts: Option<u32>,
    base_delay_ms: Option<u64>,
    max_delay_secs: Option<f64>,
    deadline_secs: Option<f64>,
    attempt_timeout_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBreaker {
    threshold: Option<u32>,
    cooldown_secs: Option<f64>,
}

/// Everything the CLI and gateway are configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The settings file that was read, if any.
    pub file: Option<PathBuf>,
    /// The database of agents, configs and usage: a SQLite file, or a
    /// `postgres://` URL (its password never shown).
    pub database: crate::store::Database,
    /// Most connections a PostgreSQL store opens (also set in
    /// `database`).
    pub database_pool_size: u32,
    /// A PEM file of the CA certificates that may sign a PostgreSQL
    /// server's TLS certificate, besides the public roots (also set in
    /// `database`).
    pub database_ca_file: Option<PathBuf>,
    /// Directory of plugin components.
    pub plugins: Option<PathBuf>,
    /// Compiled-component cache; `None` uses the default location.
    pub cache_dir: Option<PathBuf>,
    /// Model overrides file.
    pub models: Option<PathBuf>,
    pub strict_models: bool,
    /// Key file holding the encryption keys (when
    /// `LLMHOST_ENCRYPTION_KEY` is not set).
    pub key_file: PathBuf,
    /// Default time budget of a request.
    pub timeout: Duration,
    pub limits: Limits,
    /// Retries, breakers and attempt timeout of calls made for agents.
    pub resilience: Resilience,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub server: ServerSettings,
    /// Most bytes of answers the response cache keeps in memory.
    pub cache_max_bytes: usize,
    /// `[shared]`: Redis for the state several replicas share.
    pub shared: crate::shared::SharedSettings,
    /// Days raw usage rows are kept (`[usage] retain_days`); `None` keeps
    /// them. The hourly rollup keeps their sums either way.
    pub usage_retain_days: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            file: None,
            database: crate::store::Database::Sqlite(PathBuf::from(crate::store::DEFAULT_DB)),
            database_pool_size: crate::store::DEFAULT_POOL_SIZE,
            database_ca_file: None,
            plugins: None,
            cache_dir: None,
            models: None,
            strict_models: false,
            key_file: default_key_file(),
            timeout: crate::host::DEFAULT_TIMEOUT,
            limits: Limits::default(),
            resilience: Resilience::default(),
            providers: BTreeMap::new(),
            server: ServerSettings::default(),
            cache_max_bytes: crate::router::cache::DEFAULT_MAX_BYTES,
            shared: crate::shared::SharedSettings::default(),
            usage_retain_days: None,
        }
    }
}

/// `$XDG_CONFIG_HOME/llmhost/encryption.key`, else
/// `~/.config/llmhost/encryption.key`, else `./llmhost.key`.
pub fn default_key_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        });
    match base {
        Some(base) => base.join("llmhost").join("encryption.key"),
        None => PathBuf::from("llmhost.key"),
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration, Error> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Error::InvalidConfig(format!(
            "{what} must be a number of seconds between 0 and 86400, not {value}"
        )))
    }
}

fn megabytes(value: u64, what: &str) -> Result<usize, Error> {
    if (1..=1 << 20).contains(&value) {
        Ok((value as usize) << 20)
    } else {
        Err(Error::InvalidConfig(format!(
            "{what} must be between 1 and 1048576 MB, not {value}"
        )))
    }
}

impl Settings {
    /// Reads `file` (it must exist), else `LLMHOST_CONFIG` (it must exist),
    /// else `./llmhost.toml` when present; then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Error> {
        Self::load_with(file, &|name| std::env::var(name).ok())
    }

    /// [`Settings::load`] with an environment lookup of the caller's.
    pub fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let named = file
            .map(Path::to_path_buf)
            .or_else(|| env(FILE_ENV).map(PathBuf::from));
        let mut settings = Settings::default();
        match named {
            Some(path) => settings.apply_file(&path)?,
            None => {
                let path = PathBuf::from(DEFAULT_FILE);
                if path.is_file() {
                    settings.apply_file(&path)?;
                }
            }
        }
        settings.apply_env(&env)?;
        Ok(settings)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::InvalidConfig(format!("cannot read settings {}: {err}", path.display()))
        })?;
        let file: FileSettings = toml::from_str(&text)
            .map_err(|err| Error::InvalidConfig(format!("{}: {err}", path.display())))?;
        // Relative paths in the file are relative to the file.
        let dir = path.parent().unwrap_or(Path::new(""));
        let rel = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
        let what = |key: &str| format!("{}: {key}", path.display());
        if let Some(db) = file.database {
            self.database = match crate::store::Database::parse(&db) {
                crate::store::Database::Sqlite(path) => crate::store::Database::Sqlite(rel(path)),
                url => url,
            };
        }
        if let Some(days) = file.usage.retain_days {
            if days == 0 {
                return Err(Error::InvalidConfig(format!(
                    "{}: 0 days would delete every usage row at once; give 1 or more, or leave it out",
                    what("usage.retain_days")
                )));
            }
            self.usage_retain_days = Some(days);
        }
        if let Some(size) = file.database_pool_size {
            self.database_pool_size = pool_size(size, &what("database_pool_size"))?;
        }
        if let Some(ca) = file.database_ca_file {
            self.database_ca_file = Some(rel(ca));
        }
        self.plugins = file.plugins.map(rel).or(self.plugins.take());
        self.cache_dir = file.cache_dir.map(rel).or(self.cache_dir.take());
        self.models = file.models.map(rel).or(self.models.take());
        if let Some(strict) = file.strict_models {
            self.strict_models = strict;
        }
        if let Some(secs) = file.timeout_secs {
            self.timeout = seconds(secs, &what("timeout_secs"))?;
        }
        if let Some(key_file) = file.encryption.key_file {
            self.key_file = rel(key_file);
        }
        let limits = file.limits;
        if let Some(mb) = limits.memory_mb {
            self.limits.memory_bytes = megabytes(mb, &what("limits.memory_mb"))?;
        }
        if let Some(secs) = limits.cpu_secs {
            self.limits.cpu_time = seconds(secs, &what("limits.cpu_secs"))?;
        }
        if let Some(mb) = limits.response_mb {
            self.limits.max_response_bytes = megabytes(mb, &what("limits.response_mb"))?;
        }
        if let Some(secs) = limits.connect_timeout_secs {
            self.limits.connect_timeout = seconds(secs, &what("limits.connect_timeout_secs"))?;
        }
        if let Some(n) = limits.max_concurrent_instances {
            if n == 0 {
                return Err(Error::InvalidConfig(format!(
                    "{} must be at least 1",
                    what("limits.max_concurrent_instances")
                )));
            }
            self.limits.max_concurrent_instances = n;
        }
        if let Some(n) = limits.max_requests_per_call {
            if n == 0 {
                return Err(Error::InvalidConfig(format!(
                    "{} must be at least 1",
                    what("limits.max_requests_per_call")
                )));
            }
            self.limits.max_outbound_requests = n;
        }
        if let Some(mb) = limits.tokenizer_mb_per_call {
            self.limits.max_tokenizer_bytes_per_call =
                megabytes(mb, &what("limits.tokenizer_mb_per_call"))?;
        }
        if let Some(mb) = limits.tokenizer_mb_per_request {
            self.limits.max_tokenizer_bytes_per_request =
                megabytes(mb, &what("limits.tokenizer_mb_per_request"))?;
        }
        let retry = file.retry;
        if let Some(n) = retry.max_attempts {
            if !(1..=10).contains(&n) {
                return Err(Error::InvalidConfig(format!(
                    "{} must be between 1 and 10",
                    what("retry.max_attempts")
                )));
            }
            self.resilience.retry.max_attempts = n;
        }
        if let Some(ms) = retry.base_delay_ms {
            self.resilience.retry.base_delay = Duration::from_millis(ms);
        }
        if let Some(secs) = retry.max_delay_secs {
            self.resilience.retry.max_delay = seconds(secs, &what("retry.max_delay_secs"))?;
        }
        if let Some(secs) = retry.deadline_secs {
            self.resilience.retry.deadline = seconds(secs, &what("retry.deadline_secs"))?;
        }
        if let Some(secs) = retry.attempt_timeout_secs {
            self.resilience.attempt_timeout =
                Some(seconds(secs, &what("retry.attempt_timeout_secs"))?);
        }
        if let Some(n) = file.breaker.threshold {
            self.resilience.breaker.threshold = n;
        }
        if let Some(secs) = file.breaker.cooldown_secs {
            self.resilience.breaker.cooldown = seconds(secs, &what("breaker.cooldown_secs"))?;
        }
        if let Some(listen) = &file.server.listen {
            self.server.listen = listen_address(listen, &what("server.listen"))?;
        }
        if let Some(secs) = file.server.shutdown_grace_secs {
            self.server.shutdown_grace = seconds(secs, &what("server.shutdown_grace_secs"))?;
        }
        if let Some(mb) = file.server.max_body_mb {
            self.server.max_body_bytes = megabytes(mb, &what("server.max_body_mb"))?;
        }
        if let Some(mb) = file.cache.max_mb {
            self.cache_max_bytes = megabytes(mb, &what("cache.max_mb"))?;
        }
        if let Some(url) = file.shared.redis_url.filter(|u| !u.trim().is_empty()) {
            self.shared.redis_url = Some(crate::shared::RedisUrl::new(url.trim()));
        }
        if let Some(ca_file) = file.shared.redis_ca_file {
            self.shared.redis_ca_file = Some(rel(ca_file));
        }
        if let Some(mode) = &file.shared.on_unavailable {
            self.shared.on_unavailable =
                crate::shared::OnUnavailable::parse(mode, &what("shared.on_unavailable"))?;
        }
        for (id, provider) in &file.providers {
            if let Some(url) = &provider.base_url {
                crate::host::authority_of(url).map_err(|err| {
                    Error::InvalidConfig(format!("{}: {err}", what(&format!("providers.{id}"))))
                })?;
            }
        }
        self.providers = file.providers;
        self.file = Some(path.to_path_buf());
        Ok(())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
        if let Some(db) = env(DB_ENV) {
            self.database = crate::store::Database::parse(&db);
        }
        if let Some(size) = env(DB_POOL_ENV) {
            let size = size.trim().parse().map_err(|_| {
                Error::InvalidConfig(format!("{DB_POOL_ENV}: `{size}` is not a whole number"))
            })?;
            self.database_pool_size = pool_size(size, DB_POOL_ENV)?;
        }
        self.database.set_pool_size(self.database_pool_size);
        if let Some(ca) = env(DB_CA_FILE_ENV).filter(|ca| !ca.trim().is_empty()) {
            self.database_ca_file = Some(PathBuf::from(ca));
        }
        self.database.set_ca_file(self.database_ca_file.clone());
        if let Some(dir) = env(crate::host::PLUGINS_ENV) {
            self.plugins = Some(PathBuf::from(dir));
        }
        if let Some(listen) = env("LLMHOST_LISTEN") {
            self.server.listen = listen_address(&listen, "LLMHOST_LISTEN")?;
        }
        if let Some(dir) = env("LLMHOST_CACHE_DIR") {
            self.cache_dir = Some(PathBuf::from(dir));
        }
        if let Some(models) = env("LLMHOST_MODELS") {
            self.models = Some(PathBuf::from(models));
        }
        if let Some(strict) = env("LLMHOST_STRICT_MODELS") {
            self.strict_models = match strict.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                other => {
                    return Err(Error::InvalidConfig(format!(
                        "LLMHOST_STRICT_MODELS must be true or false, not `{other}`"
                    )));
                }
            };
        }
        if let Some(url) = env(crate::shared::REDIS_URL_ENV) {
            self.shared.redis_url = Some(crate::shared::RedisUrl::new(url.trim()));
        }
        if let Some(ca_file) = env(crate::shared::REDIS_CA_FILE_ENV) {
            self.shared.redis_ca_file = Some(PathBuf::from(ca_file));
        }
        if let Some(mode) = env(crate::shared::ON_UNAVAILABLE_ENV) {
            self.shared.on_unavailable =
                crate::shared::OnUnavailable::parse(&mode, crate::shared::ON_UNAVAILABLE_ENV)?;
        }
        if let Some(key_file) = env(KEY_FILE_ENV) {
            self.key_file = PathBuf::from(key_file);
        }
        if let Some(secs) = env(TIMEOUT_ENV) {
            let value: f64 = secs.trim().parse().map_err(|_| {
                Error::InvalidConfig(format!("{TIMEOUT_ENV} must be a number of seconds"))
            })?;
            self.timeout = seconds(value, TIMEOUT_ENV)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn file_then_env_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmhost.toml");
        std::fs::write(
            &file,
            r#"
database = "data/agents.db"
timeout_secs = 30
strict_models = true
[encryption]
key_file = "/etc/llmhost/key"
[limits]
memory_mb = 64
[providers.openai]
base_url = "https://proxy.example.com/v1"
allowed_hosts = ["proxy.example.com"]
"#,
        )
        .unwrap();
        let settings = Settings::load_with(Some(&file), &env_of(&[])).unwrap();
        assert_eq!(
            settings.database.sqlite_path(),
            Some(dir.path().join("data/agents.db").as_path())
        );
        assert_eq!(settings.timeout, Duration::from_secs(30));
        assert!(settings.strict_models);
        assert_eq!(settings.key_file, PathBuf::from("/etc/llmhost/key"));
        assert_eq!(settings.limits.memory_bytes, 64 << 20);
        assert_eq!(settings.limits.cpu_time, Limits::default().cpu_time);
        assert_eq!(
            settings.providers["openai"].base_url.as_deref(),
            Some("https://proxy.example.com/v1")
        );

        let env = env_of(&[
            ("LLMHOST_DB", "/tmp/other.db"),
            ("LLMHOST_TIMEOUT_SECS", "5"),
            ("LLMHOST_STRICT_MODELS", "false"),
        ]);
        let settings = Settings::load_with(Some(&file), &env).unwrap();
        assert_eq!(
            settings.database.sqlite_path(),
            Some(Path::new("/tmp/other.db"))
        );
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert!(!settings.strict_models);
        assert_eq!(settings.file.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn the_database_ca_file_comes_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmhost.toml");
        std::fs::write(
            &file,
            "database = \"postgres://db.internal/llmhost?sslmode=require\"\n\
             database_ca_file = \"certs/db-ca.pem\"\n",
        )
        .unwrap();
        let ca_of = |settings: &Settings| match &settings.database {
            crate::store::Database::Postgres(url) => url.ca_file().map(Path::to_path_buf),
            other => panic!("not PostgreSQL: {other:?}"),
        };
        // Relative to the file, in the settings and in the database.
        let settings = Settings::load_with(Some(&file), &env_of(&[])).unwrap();
        let in_file = dir.path().join("certs/db-ca.pem");
        assert_eq!(
            settings.database_ca_file.as_deref(),
            Some(in_file.as_path())
        );
        assert_eq!(ca_of(&settings), Some(in_file));
        // The environment wins, also for a database it names.
        let env = env_of(&[
            ("LLMHOST_DB", "postgres://other/llmhost"),
            ("LLMHOST_DB_CA_FILE", "/etc/llmhost/rds.pem"),
        ]);
        let settings = Settings::load_with(Some(&file), &env).unwrap();
        assert_eq!(
            ca_of(&settings),
            Some(PathBuf::from("/etc/llmhost/rds.pem"))
        );
    }

    #[test]
    fn a_postgres_url_is_kept_whole_with_its_pool_size() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmhost.toml");
        std::fs::write(
            &file,
            "database = \"postgres://llmhost:Secret-pw@db.internal/llmhost\"\n\
             database_pool_size = 20\n",
        )
        .unwrap();
        let settings = Settings::load_with(Some(&file), &env_of(&[])).unwrap();
        assert_eq!(settings.usage_retain_days, None);
        std::fs::write(
            &file,
            "database = \"postgres://llmhost:Secret-pw@db.internal/llmhost\"\n\
             database_pool_size = 20\n[usage]\nretain_days = 30\n",
        )
        .unwrap();
        let settings = Settings::load_with(Some(&file), &env_of(&[])).unwrap();
        let crate::store::Database::Postgres(url) = &settings.database else {
            panic!("not PostgreSQL: {:?}", settings.database);
        };
        assert_eq!(url.pool_size, 20);
        assert_eq!(settings.usage_retain_days, Some(30));
        let shown = format!("{settings:?} {}", settings.database);
        assert!(!shown.contains("Secret-pw"), "{shown}");
        assert!(
            shown.contains("postgres://llmhost:***@db.internal/llmhost"),
            "{shown}"
        );

        let env = env_of(&[
            ("LLMHOST_DB", "postgresql://h/other"),
            ("LLMHOST_DB_POOL_SIZE", "3"),
        ]);
        let settings = Settings::load_with(Some(&file), &env).unwrap();
        assert!(settings.database.is_postgres());
        assert_eq!(settings.database_pool_size, 3);
        assert_eq!(settings.database_ca_file, None);
        for env in [
            env_of(&[("LLMHOST_DB_POOL_SIZE", "0")]),
            env_of(&[("LLMHOST_DB_POOL_SIZE", "many")]),
        ] {
            let err = Settings::load_with(None, &env).unwrap_err();
            assert_eq!(err.kind(), "invalid_config", "{err}");
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmhost.toml");
        for (text, needle) in [
            ("databse = \"x\"", "databse"),
            ("timeout_secs = -1", "timeout_secs"),
            ("[limits]\nmemory_mb = 0", "memory_mb"),
            ("[providers.openai]\nbase_url = \"ftp://x\"", "scheme"),
            ("[providers.openai]\napi_key = \"sk\"", "api_key"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = Settings::load_with(Some(&file), &env_of(&[])).unwrap_err();
            assert_eq!(err.kind(), "invalid_config");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        std::fs::write(&file, "[shared]\non_unavailable = \"ajar\"").unwrap();
        let err = Settings::load_with(Some(&file), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("shared.on_unavailable"), "{err}");
        std::fs::write(
            &file,
            "[shared]\nredis_url = \"redis://:hunter2@127.0.0.1:6379\"\non_unavailable = \"open\"",
        )
        .unwrap();
        let settings = Settings::load_with(Some(&file), &env_of(&[])).unwrap();
        assert_eq!(
            settings.shared.on_unavailable,
            crate::shared::OnUnavailable::Open
        );
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://:***@127.0.0.1:6379"), "{shown}");
        let settings = Settings::load_with(
            Some(&file),
            &env_of(&[("LLMHOST_REDIS_URL", "redis://127.0.0.1:7000")]),
        )
        .unwrap();
        assert_eq!(
            settings.shared.redis_url.unwrap().redacted(),
            "redis://127.0.0.1:7000"
        );
        // A CA file named in the file is relative to it; the variable wins.
        std::fs::write(&file, "[shared]\nredis_ca_file = \"redis-ca.pem\"").unwrap();
        let settings = Settings::load_with(Some(&file), &env_of(&[])).unwrap();
        assert_eq!(
            settings.shared.redis_ca_file,
            Some(dir.path().join("redis-ca.pem"))
        );
        let settings = Settings::load_with(
            Some(&file),
            &env_of(&[("LLMHOST_REDIS_CA_FILE", "/etc/llmhost/ca.pem")]),
        )
        .unwrap();
        assert_eq!(
            settings.shared.redis_ca_file,
            Some(PathBuf::from("/etc/llmhost/ca.pem"))
        );
        let missing = dir.path().join("missing.toml");
        let err = Settings::load_with(Some(&missing), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
        let err =
            Settings::load_with(None, &env_of(&[("LLMHOST_TIMEOUT_SECS", "soon")])).unwrap_err();
        assert!(err.to_string().contains("LLMHOST_TIMEOUT_SECS"), "{err}");
    }
}
