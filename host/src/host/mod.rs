//! The embedder's API: a [`Host`] with loaded plugins, and calls that
//! resolve keys and base URLs, apply limits and account for cost.

mod collect;
pub mod grants;
mod stream;

pub use collect::StreamCollector;
pub use grants::{Access, Asks, Grant, InstallRecord};
pub use stream::ChatStream;

use crate::error::Error;
use crate::runtime::{
    Approval, CallConfig, CompileSource, ComponentCache, Contract, Instance, Limits, Plugin,
    PluginOrigin, Runtime,
};
use crate::settings::{ProviderSettings, Settings};
use crate::types::{
    ChatRequest, ChatResponse, HealthReport, ProviderError, ProviderInfo, TokenCount, TokenInput,
    Usage, capability_names,
};
use llmhost_registry::rust_decimal::Decimal;
use llmhost_registry::{Catalogue, ModelEntry, ModelOverrides, RateLimits};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Time budget of a request when the target sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Environment variable naming the plugin directory.
pub const PLUGINS_ENV: &str = "LLMHOST_PLUGINS";

/// Builds a [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    plugin_dir: Option<PathBuf>,
    plugin_dir_from_env: bool,
    builtins: bool,
    cache_dir: Option<PathBuf>,
    cache_key_file: Option<PathBuf>,
    limits: Limits,
    model_overrides: ModelOverrides,
    strict_models: bool,
    providers: BTreeMap<String, ProviderSettings>,
    default_timeout: Duration,
    environment: Environment,
    resilience: crate::resilience::Resilience,
    usage_sink: Option<Arc<dyn crate::router::UsageSink>>,
    cache_max_bytes: usize,
    shared: Option<Arc<crate::shared::Redis>>,
}

/// A lookup of environment variables by name.
type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where a host reads environment variables (keys and base URLs).
#[derive(Clone)]
struct Environment(Arc<EnvLookup>);

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Environment")
    }
}

impl Default for Environment {
    fn default() -> Self {
        Self(Arc::new(|name| std::env::var(name).ok()))
    }
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            plugin_dir: None,
            plugin_dir_from_env: true,
            builtins: true,
            cache_dir: ComponentCache::default_dir(),
            cache_key_file: None,
            limits: Limits::default(),
            model_overrides: ModelOverrides::default(),
            strict_models: false,
            providers: BTreeMap::new(),
            default_timeout: DEFAULT_TIMEOUT,
            environment: Environment::default(),
            resilience: crate::resilience::Resilience::default(),
            usage_sink: None,
            cache_max_bytes: crate::router::cache::DEFAULT_MAX_BYTES,
            shared: None,
        }
    }
}

impl HostBuilder {
    /// Loads every `*.wasm` in `dir` as a plugin (instead of the directory
    /// named by `LLMHOST_PLUGINS`).
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dir = Some(dir.into());
        self
    }

    /// Ignores `LLMHOST_PLUGINS` (tests, embedders with their own config).
    pub fn ignore_plugin_env(mut self) -> Self {
        self.plugin_dir_from_env = false;
        self
    }

    /// Leaves out the providers compiled into the host.
    pub fn without_builtins(mut self) -> Self {
        self.builtins = false;
        self
    }

    /// Keeps compiled components in `dir` (`None`: compile at every start).
    /// Default: `$LLMHOST_CACHE_DIR`, else the user's cache directory.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Authenticates cached artifacts with the key in `path` (created
    /// there, mode 0600, on first use) instead of
    /// `$XDG_CONFIG_HOME/llmhost/cache.key`: for containers without a
    /// home directory, or embedders with their own config directory. It
    /// must not be inside the cache directory.
    pub fn cache_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_key_file = Some(path.into());
        self
    }

    /// Memory, CPU and size limits of every request.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Corrects or adds catalogue entries (prices, limits, new models)
    /// on top of what the plugins declare.
    pub fn model_overrides(mut self, overrides: ModelOverrides) -> Self {
        self.model_overrides = overrides;
        self
    }

    /// Refuses requests for models missing from the catalogue instead of
    /// passing them through with an unknown cost.
    pub fn strict_models(mut self, strict: bool) -> Self {
        self.strict_models = strict;
        self
    }

    /// Operator settings per provider id: a base URL used when neither
    /// the call nor the provider's environment variable gives one, and
    /// extra approved hosts.
    pub fn provider_settings(mut self, providers: BTreeMap<String, ProviderSettings>) -> Self {
        self.providers = providers;
        self
    }

    /// Time budget of requests whose target sets none (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Reads keys and base URLs from `lookup` instead of the process
    /// environment (an embedder's own secret store, or a test's map). The
    /// variables a plugin may read are still only those it was granted.
    pub fn environment(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.environment = Environment(Arc::new(lookup));
        self
    }

    /// The retry, rate-limit and breaker policy of [`Host::chat`] and
    /// [`Host::stream`] (and of [`Host::router`]).
    pub fn resilience(mut self, resilience: crate::resilience::Resilience) -> Self {
        self.resilience = resilience;
        self
    }

    /// Where [`Host::chat`] and [`Host::stream`] (and [`Host::router`])
    /// record each attempt's usage; by default nowhere.
    pub fn usage_sink(mut self, sink: Arc<dyn crate::router::UsageSink>) -> Self {
        self.usage_sink = Some(sink);
        self
    }

    /// Keeps the client-side rate limits (per provider, model and API
    /// key), circuit breakers and response cache of [`Host::router`] in
    /// `shared` (Redis), for every replica at once, when given.
    pub fn shared_state(mut self, shared: Option<Arc<crate::shared::Redis>>) -> Self {
        self.shared = shared;
        self
    }

    /// Most bytes of answers the response cache of [`Host::router`] keeps
    /// in memory (default [`crate::router::cache::DEFAULT_MAX_BYTES`]).
    /// Calls use the cache only when their plan has a policy.
    pub fn response_cache_bytes(mut self, max_bytes: usize) -> Self {
        self.cache_max_bytes = max_bytes;
        self
    }

    /// Applies everything [`Settings`] configures: plugin directory, cache,
    /// limits, strict models, provider settings, default timeout. Model
    /// overrides are read from `settings.models` when set.
    pub fn settings(mut self, settings: &Settings) -> Result<Self, Error> {
        self = self
            .ignore_plugin_env()
            .limits(settings.limits.clone())
            .strict_models(settings.strict_models)
            .provider_settings(settings.providers.clone())
            .default_timeout(settings.timeout)
            .resilience(settings.resilience)
            .response_cache_bytes(settings.cache_max_bytes);
        if let Some(dir) = &settings.plugins {
            self = self.plugin_dir(dir);
        }
        if let Some(dir) = &settings.cache_dir {
            self = self.cache_dir(Some(dir.clone()));
        }
        if let Some(path) = &settings.models {
            let text = std::fs::read_to_string(path).map_err(|err| {
                Error::InvalidConfig(format!(
                    "cannot read model overrides {}: {err}",
                    path.display()
                ))
            })?;
            let overrides = ModelOverrides::from_toml(&text)
                .map_err(|err| Error::InvalidConfig(format!("{}: {err}", path.display())))?;
            self = self.model_overrides(overrides);
        }
        Ok(self)
    }

    /// Creates the engine and loads the plugins. A plugin file that fails
    /// to load does not stop the others; see [`Host::load_errors`].
    ///
    /// A plugin file gets what its install record grants (see
    /// [`grants`]); one without a record loads but reaches nothing, and
    /// one that replaces a built-in provider or changed since it was
    /// installed is refused unless the record says so.
    pub async fn build(self) -> Result<Host, Error> {
        let mut cache = ComponentCache::new(self.cache_dir);
        if let Some(key_file) = self.cache_key_file {
            cache = cache.with_key_file(key_file);
        }
        let runtime = Runtime::new(self.limits, cache)?;
        let mut plugins: BTreeMap<String, Loaded> = BTreeMap::new();
        let mut load_errors = Vec::new();
        let mut builtin_env = Vec::new();
        if self.builtins {
            for (id, bytes) in crate::builtin::BUILTIN_PROVIDERS {
                let plugin = runtime.load(bytes, PluginOrigin::BuiltIn).await?;
                if plugin.info.id != *id {
                    return Err(Error::Internal(format!(
                        "built-in provider `{id}` reports id `{}`",
                        plugin.info.id
                    )));
                }
                builtin_env.push((plugin.info.id.clone(), plugin.info.api_key_env.clone()));
                let access = Access::builtin(&plugin.info, self.providers.get(*id));
                plugins.insert(
                    plugin.info.id.clone(),
                    Loaded {
                        plugin: Arc::new(plugin),
                        access,
                    },
                );
            }
        }
        let dir = self.plugin_dir.or_else(|| {
            self.plugin_dir_from_env
                .then(|| {
                    std::env::var_os(PLUGINS_ENV)
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from)
                })
                .flatten()
        });
        if let Some(dir) = dir {
            let mut from_dir: BTreeMap<String, PathBuf> = BTreeMap::new();
            for path in plugin_files(&dir)? {
                match load_file(&runtime, &path, &self.providers).await {
                    Ok(loaded) => {
                        let id = loaded.plugin.info.id.clone();
                        if let Some(first) = from_dir.get(&id) {
                            load_errors.push(Error::PluginLoad {
                                path,
                                message: format!(
                                    "provider id `{id}` is already served by {}",
                                    first.display()
                                ),
                            });
                            continue;
                        }
                        let replaces = plugins
                            .get(&id)
                            .is_some_and(|p| p.plugin.origin == PluginOrigin::BuiltIn);
                        if replaces && !loaded.replaces_builtin {
                            load_errors.push(Error::PluginLoad {
                                path,
                                message: format!(
                                    "provider id `{id}` is a built-in provider's; install the file with `llmhost plugins install --replace` to serve it instead"
                                ),
                            });
                            continue;
                        }
                        if replaces {
                            tracing::info!(%id, path = %path.display(), "plugin replaces the built-in provider");
                        }
                        if !loaded.access.installed {
                            tracing::warn!(%id, path = %path.display(), "plugin has no install record: it reaches nothing until `llmhost plugins install` grants it");
                        }
                        from_dir.insert(id.clone(), path);
                        plugins.insert(
                            id,
                            Loaded {
                                plugin: loaded.plugin,
                                access: loaded.access,
                            },
                        );
                    }
                    Err(err) => {
                        tracing::warn!("{err}");
                        load_errors.push(err);
                    }
                }
            }
        }
        let mut catalogue = Catalogue::new();
        for loaded in plugins.values() {
            let plugin = &loaded.plugin;
            for model in &plugin.info.models {
                let pricing = registry_pricing(&model.pricing);
                if let Err(err) = pricing.validate() {
                    let path = match &plugin.origin {
                        PluginOrigin::File(path) => path.clone(),
                        PluginOrigin::BuiltIn => PathBuf::from("<built-in>"),
                    };
                    load_errors.push(Error::PluginLoad {
                        path,
                        message: format!(
                            "model `{}` of `{}` left out of the catalogue: its pricing is invalid: {err}",
                            grants::printable(&model.id),
                            plugin.info.id
                        ),
                    });
                    continue;
                }
                catalogue.insert(ModelEntry {
                    provider: plugin.info.id.clone(),
                    id: model.id.clone(),
                    display_name: model.display_name.clone(),
                    context_window: model.context_window,
                    max_output_tokens: model.max_output_tokens,
                    pricing,
                    capabilities: capability_names(model.capabilities),
                    tokenizer: model.tokenizer.clone(),
                    tokenizer_exact: model.tokenizer_exact,
                    rate_limits: RateLimits::default(),
                });
            }
        }
        catalogue
            .apply(&self.model_overrides)
            .map_err(|err| Error::InvalidConfig(err.to_string()))?;
        Ok(Host {
            inner: Arc::new(Inner {
                runtime,
                plugins,
                builtin_env,
                overridden: self
                    .model_overrides
                    .model
                    .iter()
                    .map(|m| (m.provider.clone(), m.id.clone()))
                    .collect(),
                catalogue,
                load_errors,
                strict_models: self.strict_models,
                providers: self.providers,
                default_timeout: self.default_timeout,
                environment: self.environment,
                routing: crate::router::RoutingState::with_shared(
                    self.resilience,
                    self.usage_sink
                        .unwrap_or_else(|| Arc::new(crate::router::DiscardSink)),
                    match &self.shared {
                        Some(redis) => crate::router::cache::ResponseCache::in_redis(
                            redis.clone(),
                            self.cache_max_bytes,
                        ),
                        None => {
                            crate::router::cache::ResponseCache::in_memory(self.cache_max_bytes)
                        }
                    },
                    self.shared,
                ),
            }),
        })
    }
}

/// A plugin file read, checked against its install record and loaded.
struct LoadedFile {
    plugin: Arc<Plugin>,
    access: Access,
    replaces_builtin: bool,
}

async fn load_file(
    runtime: &Runtime,
    path: &Path,
    providers: &BTreeMap<String, ProviderSettings>,
) -> Result<LoadedFile, Error> {
    let load_error = |message: String| Error::PluginLoad {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|err| load_error(err.to_string()))?;
    let record = InstallRecord::read_for(path)?;
    // A changed file is refused before any of it runs.
    if let Some(record) = &record
        && record.blake3 != grants::content_hash(&bytes)
    {
        return Err(load_error(
            "the file changed since it was installed: its grant no longer applies; review it and install it again (`llmhost plugins install FILE --force`)".into(),
        ));
    }
    let plugin = runtime
        .load(&bytes, PluginOrigin::File(path.to_owned()))
        .await
        .map_err(|err| match err {
            Error::PluginLoad { .. } => err,
            other => load_error(other.to_string()),
        })?;
    if let Some(record) = &record
        && record.provider != plugin.info.id
    {
        return Err(load_error(format!(
            "its install record is for provider `{}`, but it reports `{}`",
            record.provider, plugin.info.id
        )));
    }
    if let Some(record) = &record
        && plugin.info.auth.plugin_sees_key()
        && !record.key
    {
        return Err(load_error(
            "it handles the API key itself, and its install record does not grant it the key: install it again with --allow-key to let the key enter it".into(),
        ));
    }
    let access = Access::third_party(
        &plugin.info,
        record.as_ref(),
        providers.get(&plugin.info.id),
    );
    Ok(LoadedFile {
        plugin: Arc::new(plugin),
        access,
        replaces_builtin: record.is_some_and(|r| r.replaces_builtin),
    })
}

fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| {
        Error::InvalidConfig(format!(
            "cannot read plugin directory {}: {err}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Which provider to call and how to reach it. Unset fields are resolved
/// from the provider's environment variables (`OPENAI_API_KEY`,
/// `OPENAI_BASE_URL`, …) and then its defaults.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: String,
    pub api_key: Option<SecretString>,
    pub base_url: Option<String>,
    /// Whole-request budget for `chat`; the longest wait for each chunk of
    /// a stream. Default: the host's (see [`HostBuilder::default_timeout`]).
    pub timeout: Option<Duration>,
    pub extra_headers: Vec<(String, String)>,
    /// Whether unset key and base URL are read from the environment.
    pub use_env: bool,
    /// Sent to plugins as the call's idempotency key; set it to the same
    /// value for every attempt of one logical call. A fresh one per call
    /// when unset.
    pub idempotency_key: Option<String>,
}

impl Target {
    /// A target using the environment and defaults for everything.
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            api_key: None,
            base_url: None,
            timeout: None,
            extra_headers: Vec::new(),
            use_env: true,
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key plugins may send with the call.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// Sets the base URL (also approves its host for the plugin, loopback
    /// included).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Sets the time budget.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A loaded plugin, as `llmhost plugins` lists it.
#[derive(Debug, Clone)]
pub struct PluginSummary {
    pub id: String,
    pub name: String,
    pub version: String,
    pub origin: PluginOrigin,
    /// Whether the compiled code came from the disk cache.
    pub compile: CompileSource,
    /// Time to compile or load the component.
    pub load_time: Duration,
    pub models: usize,
    /// The `llmhost:provider` contract version it exports.
    pub wit_version: String,
    /// Hosts it may reach: for a built-in those it declares plus those
    /// added in `llmhost.toml`; for a plugin file those it asks for that
    /// the operator granted (an explicit base URL is approved per call).
    pub hosts: Vec<String>,
    /// Whether it holds a grant: false for a plugin file without an
    /// install record, which reaches nothing.
    pub installed: bool,
    /// Environment variables its key and base URL may come from.
    pub env: Vec<String>,
}

/// A plugin installed by [`Host::install_plugin`].
#[derive(Debug, Clone)]
pub struct Installed {
    pub info: ProviderInfo,
    pub wit_version: String,
    /// Where the component was written.
    pub path: PathBuf,
    /// What it asked for.
    pub asks: Asks,
    /// What was recorded as granted.
    pub record: InstallRecord,
}

/// The compiled-component cache, as [`Host::component_cache`] sees it.
#[derive(Debug, Clone)]
pub struct CacheReport {
    /// `None` when caching is off.
    pub dir: Option<PathBuf>,
    pub artifacts: Vec<CacheEntry>,
}

/// One compiled component in the cache.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub path: PathBuf,
    pub bytes: u64,
    /// Whether a plugin this host loaded uses it.
    pub in_use: bool,
}

fn cache_error(dir: Option<&Path>, err: &std::io::Error) -> Error {
    let dir = dir.map_or_else(|| "<none>".into(), |d| d.display().to_string());
    Error::InvalidConfig(format!("cannot read the component cache {dir}: {err}"))
}

/// A complete answer with its accounting.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    pub provider: String,
    pub response: ChatResponse,
    /// Exact cost in USD; `None` when the model is not in the catalogue.
    pub cost_usd: Option<Decimal>,
    pub latency: Duration,
}

/// The result of a health check.
#[derive(Debug, Clone)]
pub struct HealthOutcome {
    pub provider: String,
    pub report: HealthReport,
    pub latency: Duration,
}

/// A loaded plugin and what it was granted.
struct Loaded {
    plugin: Arc<Plugin>,
    access: Access,
}

struct Inner {
    runtime: Runtime,
    plugins: BTreeMap<String, Loaded>,
    /// Each built-in provider's id and key variables.
    builtin_env: Vec<(String, Vec<String>)>,
    catalogue: Catalogue,
    /// (provider, model) of the catalogue entries the operator's model
    /// overrides file changed or added.
    overridden: std::collections::BTreeSet<(String, String)>,
    load_errors: Vec<Error>,
    strict_models: bool,
    providers: BTreeMap<String, ProviderSettings>,
    default_timeout: Duration,
    environment: Environment,
    /// Breakers, rate limits and the usage sink of routed calls.
    routing: Arc<crate::router::RoutingState>,
}

/// The running host: loaded plugins and the engine that runs them. Cheap
/// to clone; requests run in parallel.
///
/// Use a host from one tokio runtime: its pooled HTTP connections run as
/// tasks on the runtime where they were opened, and die with it.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Resolved {
    plugin: Arc<Plugin>,
    config: CallConfig,
    approval: Approval,
    timeout: Duration,
}

/// A manifest's prices as the catalogue bills them.
fn registry_pricing(pricing: &crate::types::Pricing) -> llmhost_registry::Pricing {
    let prices = |p: &crate::types::Prices| llmhost_registry::Prices {
        input: p.input,
        output: p.output,
        cache_read: p.cache_read,
        cache_write: p.cache_write,
        cache_write_hour: p.cache_write_hour,
    };
    llmhost_registry::Pricing {
        base: prices(&pricing.base),
        tiers: pricing
            .tiers
            .iter()
            .map(|tier| llmhost_registry::PriceTier {
                above_input_tokens: u64::from(tier.above_input_tokens),
                prices: prices(&tier.prices),
            })
            .collect(),
        off_peak: pricing
            .off_peak
            .iter()
            .map(|window| llmhost_registry::PriceWindow {
                start_minute: window.start_minute,
                end_minute: window.end_minute,
                prices: prices(&window.prices),
            })
            .collect(),
    }
}

/// A fresh id for a call: a random prefix drawn once per process and a
/// counter, so ids never repeat and cost no system call each.
pub(crate) fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the time tells processes apart well enough.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            bytes = (nanos as u64).to_le_bytes();
        }
        hex::encode(bytes)
    });
    format!(
        "llmhost-{prefix}-{:x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `host:port` of an http(s) URL, with the scheme's default port.
pub(crate) fn authority_of(url: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::InvalidConfig(format!("invalid base URL `{url}`: {why}"));
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not accepted"));
    }
    Ok(format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(port)
    ))
}

/// `scheme://host:port` of an http(s) URL, with the scheme's default
/// port: what an explicit base URL approves.
pub(crate) fn origin_of(url: &str) -> Result<String, Error> {
    let authority = authority_of(url)?;
    let scheme = if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

fn read_component(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|err| Error::PluginLoad {
        path: path.to_owned(),
        message: err.to_string(),
    })
}

/// Writes `bytes` to `to` through a temporary file in the same directory.
fn write_atomically(to: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let io = |err: std::io::Error| Error::Internal(format!("cannot write {}: {err}", to.display()));
    let dir = to.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(to).map_err(|err| io(err.error))?;
    Ok(())
}

impl Host {
    /// A builder with the defaults: built-in providers, plugins from
    /// `LLMHOST_PLUGINS`, the user's component cache, default limits.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The loaded providers, sorted by id.
    pub fn plugins(&self) -> Vec<PluginSummary> {
        self.inner
            .plugins
            .values()
            .map(|Loaded { plugin: p, access }| PluginSummary {
                id: p.info.id.clone(),
                name: p.info.name.clone(),
                version: p.info.version.clone(),
                origin: p.origin.clone(),
                compile: p.compile,
                load_time: p.load_time,
                models: p.info.models.len(),
                wit_version: p.wit_version.clone(),
                hosts: access.hosts.clone(),
                installed: access.installed,
                env: access
                    .key_env
                    .iter()
                    .cloned()
                    .chain(access.base_url_env.iter().map(|v| v.name.clone()))
                    .collect(),
            })
            .collect()
    }

    /// The compiled-component cache: its directory (none when caching is
    /// off) and every artifact in it, each marked whether a loaded plugin
    /// uses it.
    pub fn component_cache(&self) -> Result<CacheReport, Error> {
        let cache = self.inner.runtime.cache();
        let in_use: std::collections::HashSet<&Path> = self
            .inner
            .plugins
            .values()
            .filter_map(|p| p.plugin.artifact.as_deref())
            .collect();
        let artifacts = cache
            .artifacts()
            .map_err(|err| cache_error(cache.dir(), &err))?
            .into_iter()
            .map(|artifact| CacheEntry {
                in_use: in_use.contains(artifact.path.as_path()),
                path: artifact.path,
                bytes: artifact.bytes,
            })
            .collect();
        Ok(CacheReport {
            dir: cache.dir().map(Path::to_path_buf),
            artifacts,
        })
    }

    /// Deletes the cached artifacts no loaded plugin uses (every artifact
    /// with `all`), returning what was deleted. Artifacts are only ever
    /// recompiled, never lost: a later start compiles what it misses. Safe
    /// while other processes use the cache: a loaded artifact is mapped,
    /// and deleting its file does not unmap it.
    pub fn prune_component_cache(&self, all: bool) -> Result<Vec<CacheEntry>, Error> {
        let report = self.component_cache()?;
        if report.dir.is_none() {
            return Err(Error::InvalidConfig(
                "the component cache is off (--no-cache, or no cache directory)".into(),
            ));
        }
        let mut removed = Vec::new();
        for entry in report.artifacts {
            if entry.in_use && !all {
                continue;
            }
            match std::fs::remove_file(&entry.path) {
                Ok(()) => removed.push(entry),
                // Another process pruned it first.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(cache_error(report.dir.as_deref(), &err)),
            }
        }
        Ok(removed)
    }

    /// Loads a component file the way the plugin directory would (compile,
    /// contract check, `info()` and nothing else) without adding it, and
    /// judges what it asks for.
    pub async fn inspect(&self, path: &Path) -> Result<(ProviderInfo, String, Asks), Error> {
        let bytes = read_component(path)?;
        self.inspect_bytes(path, &bytes).await
    }

    async fn inspect_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(ProviderInfo, String, Asks), Error> {
        let plugin = self
            .inner
            .runtime
            .load(bytes, PluginOrigin::File(path.to_owned()))
            .await?;
        let asks = self.asks(&plugin.info);
        Ok((plugin.info.clone(), plugin.wit_version.clone(), asks))
    }

    /// What a manifest asks for, judged against the grant rules.
    pub fn asks(&self, info: &ProviderInfo) -> Asks {
        let mut builtin_env = self.inner.builtin_env.clone();
        for id in crate::builtin_provider_ids() {
            if !builtin_env.iter().any(|(b, _)| b == id) {
                builtin_env.push((id.to_owned(), Vec::new()));
            }
        }
        Asks::of(info, &builtin_env)
    }

    /// Checks the component at `file` and installs it into `dir` as
    /// `ID.wasm` with `grant` recorded beside it (`ID.toml`), bound to its
    /// content. The file is read once: what is checked is what is
    /// written. The grant must name only what the plugin asks for; a
    /// built-in id needs `grant.replace_builtin`, an installed one
    /// `grant.force`.
    pub async fn install_plugin(
        &self,
        dir: &Path,
        file: &Path,
        grant: &Grant,
    ) -> Result<Installed, Error> {
        let bytes = read_component(file)?;
        let (info, wit_version, asks) = self.inspect_bytes(file, &bytes).await?;
        grant.check(&asks)?;
        std::fs::create_dir_all(dir).map_err(|err| {
            Error::InvalidConfig(format!("cannot create {}: {err}", dir.display()))
        })?;
        let target = dir.join(format!("{}.wasm", info.id));
        let installed = self
            .inner
            .plugins
            .get(&info.id)
            .is_some_and(|p| matches!(p.plugin.origin, PluginOrigin::File(_)));
        if (installed || target.exists()) && !grant.force {
            return Err(Error::Conflict(format!(
                "provider `{}` is already installed ({}); pass --force to replace it",
                info.id,
                target.display()
            )));
        }
        let record = InstallRecord {
            provider: info.id.clone(),
            blake3: grants::content_hash(&bytes),
            hosts: grant.hosts.clone(),
            env: grant.env.clone(),
            replaces_builtin: asks.replaces_builtin.is_some(),
            key: grant.key,
        };
        // The record first: a component without one is powerless, one
        // whose hash does not match is refused, so no crash in between
        // leaves a file with a stale grant.
        write_atomically(
            &InstallRecord::path_for(&target),
            record.to_toml()?.as_bytes(),
        )?;
        write_atomically(&target, &bytes)?;
        Ok(Installed {
            info,
            wit_version,
            path: target,
            asks,
            record,
        })
    }

    /// A provider's manifest.
    pub fn provider_info(&self, id: &str) -> Option<&ProviderInfo> {
        self.inner.plugins.get(id).map(|p| &p.plugin.info)
    }

    /// Plugin files that failed to load.
    pub fn load_errors(&self) -> &[Error] {
        &self.inner.load_errors
    }

    /// Whether the operator's model overrides file changed or added
    /// `provider`/`model`.
    pub fn is_overridden(&self, provider: &str, model: &str) -> bool {
        self.inner
            .overridden
            .contains(&(provider.to_owned(), model.to_owned()))
    }

    /// The model catalogue: the plugins' models with the operator's
    /// overrides applied.
    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    /// Plugin instances running now, and the most that may run at once
    /// (`limits.max_concurrent_instances`; calls beyond it wait).
    pub fn instances(&self) -> (usize, usize) {
        self.inner.runtime.instances()
    }

    /// Whether the pooling instance allocator is in use.
    pub fn uses_pooling_allocator(&self) -> bool {
        self.inner.runtime.pooling()
    }

    /// The exact cost of `usage` on a model for a request made now,
    /// `None` when the model is unknown.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<Decimal> {
        self.cost_at(provider, model, usage, SystemTime::now())
    }

    /// The exact cost of `usage` on a model for a request made at `at`
    /// (off-peak prices depend on it), `None` when the model is unknown.
    pub fn cost_at(
        &self,
        provider: &str,
        model: &str,
        usage: &Usage,
        at: SystemTime,
    ) -> Option<Decimal> {
        self.inner
            .catalogue
            .cost(provider, model, &usage.billed(), at)
    }

    /// Time budget of requests whose target sets none.
    pub fn default_timeout(&self) -> Duration {
        self.inner.default_timeout
    }

    /// The base URL a call to `target` would use.
    pub fn base_url_of(&self, target: &Target) -> Result<String, Error> {
        self.resolve(target).map(|r| r.config.base_url)
    }

    /// In strict mode, refuses models the catalogue does not know.
    fn check_model(&self, provider: &str, model: &str) -> Result<(), Error> {
        if self.inner.strict_models && self.inner.catalogue.get(provider, model).is_none() {
            return Err(Error::UnknownModel {
                provider: provider.to_owned(),
                model: model.to_owned(),
            });
        }
        Ok(())
    }

    fn resolve(&self, target: &Target) -> Result<Resolved, Error> {
        let loaded = self
            .inner
            .plugins
            .get(&target.provider)
            .ok_or_else(|| Error::UnknownProvider(target.provider.clone()))?;
        let access = &loaded.access;
        let from_env = |name: &str| -> Option<String> {
            if !target.use_env {
                return None;
            }
            (self.inner.environment.0)(name).filter(|value| !value.trim().is_empty())
        };
        let api_key: Option<SecretString> = match &target.api_key {
            Some(key) => Some(SecretString::from(key.expose_secret().trim().to_owned())),
            None => access
                .key_env
                .iter()
                .find_map(|name| from_env(name))
                .map(|key| SecretString::from(key.trim().to_owned())),
        };
        let settings = self.inner.providers.get(&target.provider);
        // (URL, whether the operator set it, where it came from)
        let chosen: Option<(String, bool, String)> = target
            .base_url
            .clone()
            .map(|url| (url, true, "the base URL".to_owned()))
            .or_else(|| {
                access.base_url_env.iter().find_map(|var| {
                    from_env(&var.name).map(|url| (url, var.explicit, var.name.clone()))
                })
            })
            .or_else(|| {
                settings.and_then(|s| s.base_url.clone()).map(|url| {
                    (
                        url,
                        true,
                        format!("[providers.{}] base_url", target.provider),
                    )
                })
            });
        let (base_url, explicit, source) = chosen.unwrap_or_else(|| {
            (
                loaded.plugin.info.default_base_url.clone(),
                false,
                "its default base URL".to_owned(),
            )
        });
        // A URL from a variable is not echoed: a variable may hold
        // anything, a secret included.
        let origin = origin_of(&base_url).map_err(|err| match &target.base_url {
            Some(_) => err,
            None => Error::InvalidConfig(format!(
                "the base URL of `{}` from {source} is not a valid http(s) URL",
                target.provider
            )),
        })?;
        let timeout = target.timeout.unwrap_or(self.inner.default_timeout);
        let config = CallConfig {
            api_key,
            // A 0.1 plugin sends its requests itself and so is handed its
            // key; a 0.2 plugin only when it signs requests and the key was
            // granted to it.
            key_for_plugin: match loaded.plugin.contract {
                Contract::V0_1 => true,
                Contract::V0_2 => access.key_for_plugin,
            },
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
            extra_headers: target.extra_headers.clone(),
            request_id: new_request_id(),
            idempotency_key: target
                .idempotency_key
                .clone()
                .unwrap_or_else(new_request_id),
        };
        let approval = if access.installed {
            Approval {
                declared_hosts: access.hosts.clone(),
                explicit_origin: explicit.then_some(origin),
                refusal: None,
            }
        } else {
            Approval {
                declared_hosts: Vec::new(),
                explicit_origin: None,
                refusal: Some(format!(
                    "nothing: `{}` has no install record (grant it with `llmhost plugins install`)",
                    target.provider
                )),
            }
        };
        Ok(Resolved {
            plugin: loaded.plugin.clone(),
            config,
            approval,
            timeout,
        })
    }

    /// Names where the key can be set, for an `api-key-missing` error.
    fn explain(&self, plugin: &Plugin, error: Error) -> Error {
        match error {
            Error::Provider { provider, error }
                if matches!(*error, ProviderError::ApiKeyMissing(_)) =>
            {
                let vars = self
                    .inner
                    .plugins
                    .get(&plugin.info.id)
                    .map(|p| p.access.key_env.join(" or "))
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "a key variable granted to it".to_owned());
                Error::Provider {
                    error: Box::new(ProviderError::ApiKeyMissing(format!(
                        "no API key for `{provider}`: set {vars}, or pass one explicitly"
                    ))),
                    provider,
                }
            }
            other => other,
        }
    }

    /// Runs one request's work within its time budget, with errors
    /// explained for the operator.
    async fn bounded<T>(
        &self,
        resolved: &Resolved,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(resolved.timeout, work).await {
            Ok(result) => result.map_err(|err| self.explain(&resolved.plugin, err)),
            Err(_) => Err(Error::Timeout {
                provider: resolved.plugin.info.id.clone(),
                after: resolved.timeout,
            }),
        }
    }

    async fn instance(&self, resolved: &Resolved) -> Result<Instance, Error> {
        self.inner
            .runtime
            .instantiate(&resolved.plugin, resolved.approval.clone())
            .await
    }

    /// The router over this host, with the policy and usage sink the
    /// builder gave; clones share breakers and rate limits.
    pub fn router(&self) -> crate::router::Router {
        crate::router::Router::with_state(self.clone(), self.inner.routing.clone())
    }

    /// One complete answer from `target`, through the router: a failure
    /// worth another try (429 with its `retry-after`, 5xx, timeouts,
    /// network errors) is retried with back-off as the vendors' own SDKs
    /// do, within the policy's attempts and deadline; the target's
    /// `timeout` bounds each attempt. [`Host::chat_once`] makes exactly
    /// one attempt.
    pub async fn chat(&self, target: &Target, request: &ChatRequest) -> Result<ChatOutcome, Error> {
        let plan = crate::router::Plan::single(crate::router::Route::new(
            target.clone(),
            request.model.clone(),
        ));
        Ok(self.router().chat(&plan, request).await?.outcome)
    }

    /// A streamed answer from `target`, through the router: retried like
    /// [`Host::chat`] until its first chunk with content; after that a
    /// failure ends the stream. [`Host::stream_once`] makes one attempt.
    pub async fn stream(
        &self,
        target: &Target,
        request: &ChatRequest,
    ) -> Result<crate::router::RoutedStream, Error> {
        let plan = crate::router::Plan::single(crate::router::Route::new(
            target.clone(),
            request.model.clone(),
        ));
        self.router().stream(&plan, request).await
    }

    /// One attempt at a complete answer: no retry, no breaker, no usage
    /// event.
    pub async fn chat_once(
        &self,
        target: &Target,
        request: &ChatRequest,
    ) -> Result<ChatOutcome, Error> {
        let resolved = self.resolve(target)?;
        self.check_model(&target.provider, &request.model)?;
        let started = Instant::now();
        let started_at = SystemTime::now();
        let work = async {
            let mut instance = self.instance(&resolved).await?;
            instance.chat(&resolved.config, request).await
        };
        let response = self.bounded(&resolved, work).await?;
        let limit = self.inner.runtime.limits().max_response_bytes;
        if response.answer_bytes() > limit {
            return Err(Error::ResponseTooLarge {
                provider: target.provider.clone(),
                limit_bytes: limit,
            });
        }
        let latency = started.elapsed();
        let cost_usd = self.priced(
            &target.provider,
            &request.model,
            &response.usage,
            started_at,
        );
        Ok(ChatOutcome {
            provider: target.provider.clone(),
            response,
            cost_usd,
            latency,
        })
    }

    pub(crate) fn priced(
        &self,
        provider: &str,
        model: &str,
        usage: &Usage,
        at: SystemTime,
    ) -> Option<Decimal> {
        let cost = self.cost_at(provider, model, usage, at);
        if cost.is_none() {
            tracing::warn!(provider, model, "model not in the catalogue: cost unknown");
        }
        cost
    }

    /// One attempt at a streamed answer: no retry, no breaker, no usage
    /// event.
    pub async fn stream_once(
        &self,
        target: &Target,
        request: &ChatRequest,
    ) -> Result<ChatStream, Error> {
        let resolved = self.resolve(target)?;
        self.check_model(&target.provider, &request.model)?;
        let started = Instant::now();
        let started_at = SystemTime::now();
        let work = async {
            let mut instance = self.instance(&resolved).await?;
            let handle = instance.start_stream(&resolved.config, request).await?;
            Ok::<_, Error>((instance, handle))
        };
        let (instance, handle) = self.bounded(&resolved, work).await?;
        Ok(ChatStream::new(
            self.clone(),
            instance,
            handle,
            &request.model,
            resolved.timeout,
            (started, started_at),
            self.inner.runtime.limits().max_response_bytes,
        ))
    }

    /// Counts tokens for `model`.
    pub async fn count_tokens(
        &self,
        target: &Target,
        model: &str,
        input: &TokenInput,
    ) -> Result<TokenCount, Error> {
        let resolved = self.resolve(target)?;
        let work = async {
            let mut instance = self.instance(&resolved).await?;
            instance.count_tokens(&resolved.config, model, input).await
        };
        self.bounded(&resolved, work).await
    }

    /// Checks that the vendor answers and accepts the key.
    pub async fn health(&self, target: &Target) -> Result<HealthOutcome, Error> {
        let resolved = self.resolve(target)?;
        let started = Instant::now();
        let work = async {
            let mut instance = self.instance(&resolved).await?;
            instance.health_check(&resolved.config).await
        };
        let report = self.bounded(&resolved, work).await?;
        Ok(HealthOutcome {
            provider: target.provider.clone(),
            report,
            latency: started.elapsed(),
        })
    }
}
