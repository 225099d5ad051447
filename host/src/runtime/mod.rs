//! The WebAssembly side of the host: one engine, compiled plugins, and a
//! fresh store and instance for every request.
//!
//! Nothing here is visible to embedders: the public API ([`crate::Host`])
//! speaks in the contract's plain data types and [`crate::Error`].

pub(crate) mod bindings;
mod cache;
mod convert;
mod exchange;
pub(crate) mod gate;
pub(crate) mod outbound;
pub(crate) mod sse;
mod state;
pub(crate) mod tokenizer;

pub use cache::{CompileSource, ComponentCache};
pub use gate::{Approval, is_public};

use crate::error::Error;
use crate::types::{
    AuthScheme, ChatRequest, ChatResponse, Chunk, HealthReport, ProviderError, ProviderInfo,
    TokenCount, TokenInput,
};
use bindings::{v0_1, v0_2};
use gate::{HttpClients, RequestGate};
use secrecy::{ExposeSecret, SecretString};
use state::RequestState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{
    CallHook, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

/// Guest memory, table and stack bytes kept resident in a pool slot between
/// requests (see `Runtime::new`).
const KEEP_RESIDENT_BYTES: usize = 2 << 20;
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;
const KEEP_RESIDENT_STACK_BYTES: usize = 128 << 10;

/// Pool limits per component (see `Runtime::new`).
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MAX_MEMORIES_PER_COMPONENT: u32 = 8;
const MAX_TABLES_PER_COMPONENT: u32 = 32;
/// Instance metadata (vmctx) sizes, not guest memory.
const MAX_COMPONENT_INSTANCE_METADATA: usize = 1 << 20;
const MAX_CORE_INSTANCE_METADATA: usize = 1 << 20;

/// How often the epoch advances: how often a running guest's CPU time is
/// checked against its budget (and the guest yields to other tasks).
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Security and resource limits of every plugin request. The defaults are
/// safe for untrusted plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory one request's instance may use.
    pub memory_bytes: usize,
    /// Most CPU time one request's guest code may run (waiting on HTTP does
    /// not count).
    pub cpu_time: Duration,
    /// Largest response body a plugin may receive.
    pub max_response_bytes: usize,
    /// TCP connect timeout of outgoing requests.
    pub connect_timeout: Duration,
    /// Plugin instances that may run at the same time (pool size); more
    /// requests wait for a free slot within their time budget.
    pub max_concurrent_instances: u32,
    /// Most HTTP requests one call of a plugin may send.
    pub max_outbound_requests: u32,
    /// Most text one call of the `tokenizer` import may take.
    pub max_tokenizer_bytes_per_call: usize,
    /// Most text all `tokenizer` calls of one request may take together.
    pub max_tokenizer_bytes_per_request: usize,
    /// Most host resources (HTTP requests, bodies, streams) a request's
    /// instance may hold at once.
    pub max_resources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            cpu_time: Duration::from_secs(5),
            max_response_bytes: 32 << 20,
            connect_timeout: Duration::from_secs(10),
            max_concurrent_instances: 256,
            max_outbound_requests: 16,
            max_tokenizer_bytes_per_call: 16 << 20,
            max_tokenizer_bytes_per_request: 64 << 20,
            max_resources: 4096,
        }
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginOrigin {
    /// Compiled into the host binary.
    BuiltIn,
    /// Loaded from a file in the plugin directory.
    File(PathBuf),
}

/// A loaded, compiled plugin, ready to instantiate.
pub struct Plugin {
    pub(crate) info: ProviderInfo,
    /// The version of the `llmhost:provider` contract it exports.
    pub(crate) wit_version: String,
    /// Which of the served contracts that is.
    pub(crate) contract: Contract,
    pub(crate) origin: PluginOrigin,
    pub(crate) compile: CompileSource,
    pub(crate) load_time: Duration,
    /// Its compiled form in the component cache, if there is a cache.
    pub(crate) artifact: Option<PathBuf>,
    pre: Pre,
}

/// The contract versions the host serves side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contract {
    /// `llmhost:provider@0.1.x`: the plugin does its own HTTP over
    /// `wasi:http` and is handed its key.
    V0_1,
    /// `llmhost:provider@0.2.x`: the plugin prepares requests and parses
    /// answers; the host does the I/O and adds the key.
    V0_2,
}

/// A component linked against its contract version's imports.
enum Pre {
    V0_1(v0_1::LlmProviderPre<RequestState>),
    V0_2(v0_2::LlmProviderPre<RequestState>),
}

/// A running instance's exports.
enum Bindings {
    V0_1(v0_1::LlmProvider),
    V0_2(v0_2::LlmProvider),
}

/// Everything the host resolved for one call of a plugin.
pub struct CallConfig {
    /// The API key, if one is configured.
    pub api_key: Option<SecretString>,
    /// Whether the key may enter the plugin's memory (a 0.1 plugin, or a
    /// 0.2 plugin that signs requests and was granted the key).
    pub key_for_plugin: bool,
    /// The base URL, without a trailing `/`.
    pub base_url: String,
    /// The call's time budget.
    pub timeout: Duration,
    /// Headers the operator configured, sent with every request.
    pub extra_headers: Vec<(String, String)>,
    /// The host's id of this call.
    pub request_id: String,
    /// The same for every attempt of one logical call.
    pub idempotency_key: String,
}

impl CallConfig {
    /// The key the plugin may see, if any.
    fn key_for_plugin(&self) -> Option<String> {
        self.key_for_plugin
            .then(|| {
                self.api_key
                    .as_ref()
                    .map(|key| key.expose_secret().to_owned())
            })
            .flatten()
    }
}

/// Engine, linker and shared HTTP clients.
pub struct Runtime {
    engine: Engine,
    /// Imports of 0.1 plugins: WASI (granted nothing), `wasi:http` behind
    /// the gate, the tokenizer.
    linker_v0_1: Linker<RequestState>,
    /// Imports of 0.2 plugins: WASI (granted nothing) and the tokenizer;
    /// no `wasi:http`.
    linker_v0_2: Linker<RequestState>,
    clients: Arc<HttpClients>,
    cache: ComponentCache,
    limits: Limits,
    pooling: bool,
    /// One permit per instance the pool can hold: requests beyond that
    /// wait for a slot instead of failing.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    /// Creates the engine (pooling allocator when the address space allows
    /// it, on-demand otherwise) and starts the epoch ticker.
    pub fn new(limits: Limits, cache: ComponentCache) -> Result<Self, Error> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .wasm_component_model(true);
        let mut pool = PoolingAllocationConfig::default();
        // Per component, so one plugin cannot take a large share of the
        // pool: generous for Rust (one memory, a few tables) and Python
        // (several core modules) components, far below wasmtime's
        // unlimited defaults. Memory itself is capped per instance, over
        // all memories and tables together, by the store's limiter.
        pool.max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_component_instance_size(MAX_COMPONENT_INSTANCE_METADATA)
            .max_core_instance_size(MAX_CORE_INSTANCE_METADATA)
            .total_component_instances(limits.max_concurrent_instances)
            .total_core_instances(limits.max_concurrent_instances.saturating_mul(4))
            .total_memories(limits.max_concurrent_instances.saturating_mul(2))
            .total_tables(limits.max_concurrent_instances.saturating_mul(4))
            .total_stacks(limits.max_concurrent_instances)
            .max_memory_size(limits.memory_bytes)
            // A request touches a few hundred KiB of guest memory. Resetting
            // that with memset on reuse is cheaper than returning it to the
            // kernel and faulting it back in on the next request.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
            .async_stack_keep_resident(KEEP_RESIDENT_STACK_BYTES)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut pooled = config.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let (engine, pooling) = match Engine::new(&pooled) {
            Ok(engine) => (engine, true),
            Err(err) => {
                tracing::info!(
                    "pooling allocator unavailable ({err:#}); using on-demand allocation"
                );
                let engine = Engine::new(&config).map_err(|err| {
                    Error::Internal(format!("cannot create the wasm engine: {err:#}"))
                })?;
                (engine, false)
            }
        };
        start_epoch_ticker(&engine);

        let link_error =
            |err: wasmtime::Error| Error::Internal(format!("cannot link host interfaces: {err:#}"));
        let mut linker_v0_1 = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_v0_1)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker_v0_1))
            .and_then(|()| {
                v0_1::llmhost::provider::tokenizer::add_to_linker::<
                    RequestState,
                    wasmtime::component::HasSelf<RequestState>,
                >(&mut linker_v0_1, |state| state)
            })
            .map_err(link_error)?;
        let mut linker_v0_2 = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_v0_2)
            .and_then(|()| {
                v0_2::llmhost::provider::tokenizer::add_to_linker::<
                    RequestState,
                    wasmtime::component::HasSelf<RequestState>,
                >(&mut linker_v0_2, |state| state)
            })
            .map_err(link_error)?;
        let clients = Arc::new(HttpClients::new(
            limits.connect_timeout,
            limits.max_response_bytes,
            limits.max_outbound_requests,
        ));
        let slots = Arc::new(tokio::sync::Semaphore::new(
            limits.max_concurrent_instances as usize,
        ));
        Ok(Self {
            engine,
            linker_v0_1,
            linker_v0_2,
            clients,
            cache,
            limits,
            pooling,
            slots,
        })
    }

    /// The component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// The limits every request runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the pooling allocator is in use.
    /// Instances running now, and the most that may.
    pub fn instances(&self) -> (usize, usize) {
        let max = self.limits.max_concurrent_instances as usize;
        (max.saturating_sub(self.slots.available_permits()), max)
    }

    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from cache) a component, links it and reads its
    /// manifest.
    pub async fn load(&self, bytes: &[u8], origin: PluginOrigin) -> Result<Plugin, Error> {
        let load_error = |message: String| Error::PluginLoad {
            path: match &origin {
                PluginOrigin::File(path) => path.clone(),
                PluginOrigin::BuiltIn => PathBuf::from("<built-in>"),
            },
            message,
        };
        check_header(bytes).map_err(load_error)?;
        let (component, compile, load_time, artifact) = self
            .cache
            .load_or_compile(&self.engine, bytes)
            .map_err(|err| load_error(format!("not a valid component: {err:#}")))?;
        let (contract, wit_version) =
            contract_version(&self.engine, &component).map_err(load_error)?;
        let linker = match contract {
            Contract::V0_1 => &self.linker_v0_1,
            Contract::V0_2 => &self.linker_v0_2,
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(|err| {
            load_error(format!(
                "imports something the host does not provide to contract {wit_version} plugins: {err:#}"
            ))
        })?;
        let world_error = |err: wasmtime::Error| {
            load_error(format!("does not export the llm-provider world: {err:#}"))
        };
        let pre = match contract {
            Contract::V0_1 => {
                Pre::V0_1(v0_1::LlmProviderPre::new(instance_pre).map_err(world_error)?)
            }
            Contract::V0_2 => {
                Pre::V0_2(v0_2::LlmProviderPre::new(instance_pre).map_err(world_error)?)
            }
        };
        let mut plugin = Plugin {
            info: placeholder_info(&origin),
            wit_version,
            contract,
            origin: origin.clone(),
            compile,
            load_time,
            artifact,
            pre,
        };
        let nothing = Approval {
            refusal: Some("nothing while its manifest is read".into()),
            ..Approval::default()
        };
        // A limit hit while starting is reported as that limit, with the
        // file named by the caller.
        let mut instance = self
            .instantiate(&plugin, nothing)
            .await
            .map_err(|err| match err {
                Error::MemoryLimitExceeded { .. } | Error::CpuLimitExceeded { .. } => err,
                other => load_error(other.to_string()),
            })?;
        plugin.info = instance
            .info()
            .await
            .map_err(|err| load_error(format!("its info() failed: {err}")))?;
        validate_info(&plugin.info).map_err(load_error)?;
        Ok(plugin)
    }

    /// A fresh instance of `plugin` for one request, allowed to reach what
    /// `approval` lists.
    pub async fn instantiate(
        &self,
        plugin: &Plugin,
        approval: Approval,
    ) -> Result<Instance, Error> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the instance pool is closed".into()))?;
        let approval = Arc::new(approval);
        let gate = RequestGate::new(self.clients.clone(), approval.clone());
        let state = RequestState::new(gate, &self.limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.call_hook(|mut ctx, hook| {
            let clock = &mut ctx.data_mut().cpu;
            match hook {
                CallHook::CallingWasm | CallHook::ReturningFromHost => clock.resume(),
                CallHook::ReturningFromWasm | CallHook::CallingHost => clock.pause(),
            }
            Ok(())
        });
        // The deadline is checked once per epoch tick while guest code
        // runs; the budget itself is measured by the guest clock.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.cpu.used() > state.cpu_budget {
                state.cpu_exceeded = true;
                return Err(wasmtime::format_err!("CPU time limit exceeded"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let provider_id = plugin.info.id.clone();
        let bindings = match &plugin.pre {
            Pre::V0_1(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V0_1),
            Pre::V0_2(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V0_2),
        };
        let mut instance = Instance {
            store,
            bindings: None,
            provider: provider_id,
            auth: plugin.info.auth.clone(),
            key_optional: plugin.info.key_optional,
            stream_format: plugin.info.stream_format,
            limits: self.limits.clone(),
            clients: self.clients.clone(),
            approval,
            sent: 0,
            _slot: slot,
        };
        match bindings {
            Ok(bindings) => {
                instance.bindings = Some(bindings);
                Ok(instance)
            }
            Err(err) => Err(instance.trap_error(err)),
        }
    }
}

/// The manifest of a plugin whose `info()` has not run yet, named after
/// its file for errors raised while it starts.
fn placeholder_info(origin: &PluginOrigin) -> ProviderInfo {
    ProviderInfo::new(match origin {
        PluginOrigin::File(path) => path.display().to_string(),
        PluginOrigin::BuiltIn => "<built-in>".into(),
    })
}

/// The contract package plugins export.
pub const CONTRACT_PACKAGE: &str = "llmhost:provider";
/// The contract versions this host serves, side by side.
pub const CONTRACT_VERSIONS: &str = "0.1.x, 0.2.x";

/// Refuses files that are not WebAssembly components, saying what they are.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file".into());
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(
            "a core WebAssembly module, not a component: build it as a component \
                    (target wasm32-wasip2, or `wasm-tools component new`)"
                .into(),
        );
    }
    Ok(())
}

/// The `llmhost:provider` version a component exports, or what it exports
/// instead.
fn contract_version(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Result<(Contract, String), String> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let prefix = format!("{CONTRACT_PACKAGE}/provider@");
    match exports
        .iter()
        .find_map(|name| name.strip_prefix(prefix.as_str()))
    {
        Some(version) if version == "0.1" || version.starts_with("0.1.") => {
            Ok((Contract::V0_1, version.to_owned()))
        }
        Some(version) if version == "0.2" || version.starts_with("0.2.") => {
            Ok((Contract::V0_2, version.to_owned()))
        }
        Some(version) => Err(format!(
            "it exports {CONTRACT_PACKAGE}/provider@{version}, but this host serves {CONTRACT_PACKAGE} {CONTRACT_VERSIONS}"
        )),
        None => Err(format!(
            "it exports {}, not the llm-provider world (expected {CONTRACT_PACKAGE}/provider, versions {CONTRACT_VERSIONS})",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        )),
    }
}

/// Rejects manifests the host cannot serve.
fn validate_info(info: &ProviderInfo) -> Result<(), String> {
    let id_ok = !info.id.is_empty()
        && info.id.len() <= 64
        && info
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!(
            "provider id `{}` must be 1-64 characters of a-z, 0-9, `-` and `_`",
            info.id
        ));
    }
    // A manifest's strings reach operators' terminals: none may carry
    // control or bidirectional-override characters.
    let strings = [&info.name, &info.version, &info.default_base_url]
        .into_iter()
        .chain(&info.api_key_env)
        .chain(&info.base_url_env)
        .chain(&info.hosts)
        .chain(
            info.models
                .iter()
                .flat_map(|m| [&m.id, &m.display_name, &m.tokenizer]),
        );
    for text in strings {
        if let std::borrow::Cow::Owned(shown) = crate::host::grants::printable(text) {
            return Err(format!(
                "its manifest holds control characters (`{shown}`); refusing a plugin that could rewrite what an operator reads"
            ));
        }
    }
    match &info.auth {
        AuthScheme::Header(name) => {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let framing = ["host", "content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|reserved| name.eq_ignore_ascii_case(reserved));
            if !token || framing {
                return Err(format!(
                    "its auth scheme names `{name}`, which is not a header the key can go in"
                ));
            }
        }
        AuthScheme::Query(name) => {
            let safe = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !safe {
                return Err(format!(
                    "its auth scheme names `{name}`, which is not a plain query parameter name"
                ));
            }
        }
        _ => {}
    }
    if !(info.default_base_url.starts_with("https://")
        || info.default_base_url.starts_with("http://"))
    {
        return Err(format!(
            "default base URL `{}` is not an http(s) URL",
            info.default_base_url
        ));
    }
    Ok(())
}

fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("llmhost-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!("cannot start the epoch ticker, CPU limits are not enforced: {err}");
    }
}

/// One request's instance. Dropping it frees everything the plugin held.
pub struct Instance {
    store: Store<RequestState>,
    bindings: Option<Bindings>,
    provider: String,
    /// How the plugin's requests are authenticated (0.2).
    auth: AuthScheme,
    /// Whether requests go out without a key when none is configured.
    key_optional: bool,
    stream_format: crate::types::StreamFormat,
    limits: Limits,
    clients: Arc<HttpClients>,
    /// Where this call's requests may go.
    approval: Arc<Approval>,
    /// Requests the host sent for this call (0.2).
    sent: u32,
    // Last: the slot is released only after the store is gone.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Instance {
    /// Turns a wasmtime failure (trap, limit) into a typed error.
    fn trap_error(&self, err: wasmtime::Error) -> Error {
        let state = self.store.data();
        if let Some((limit_bytes, scope)) = state.tokenizer_exceeded {
            Error::TokenizerLimitExceeded {
                provider: self.provider.clone(),
                limit_bytes,
                scope,
            }
        } else if state.cpu_exceeded {
            Error::CpuLimitExceeded {
                provider: self.provider.clone(),
                limit: self.limits.cpu_time,
            }
        } else if state.limits.exceeded {
            Error::MemoryLimitExceeded {
                provider: self.provider.clone(),
                limit_bytes: self.limits.memory_bytes,
            }
        } else {
            // The message may quote the guest (a panic text): shown, not
            // obeyed, in a terminal.
            Error::PluginTrap {
                provider: self.provider.clone(),
                message: crate::host::grants::printable(&format!("{err:#}")).into_owned(),
            }
        }
    }

    /// Turns a 0.1 call's outcome into the host's result type: a network
    /// error caused by the gate is reported as what the gate did.
    fn finish<T, E: Into<ProviderError>>(
        &self,
        result: wasmtime::Result<Result<T, E>>,
    ) -> Result<T, Error> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let error: ProviderError = error.into();
                let gate = &self.store.data().gate;
                if matches!(error, ProviderError::Network(_)) && gate.over_limit {
                    return Err(Error::RequestLimitExceeded {
                        provider: self.provider.clone(),
                        limit: self.limits.max_outbound_requests,
                    });
                }
                let denied = &gate.denied;
                if let (ProviderError::Network(_), Some(destination)) = (&error, denied.first()) {
                    return Err(Error::HostDenied {
                        provider: self.provider.clone(),
                        destination: destination.clone(),
                        approved: self.store.data().gate.approval_text(),
                    });
                }
                Err(Error::Provider {
                    provider: self.provider.clone(),
                    error: Box::new(error),
                })
            }
            Err(err) => Err(self.trap_error(err)),
        }
    }

    /// The 0.1 bindings and the store, borrowed apart.
    fn v0_1(&mut self) -> Option<(&v0_1::LlmProvider, &mut Store<RequestState>)> {
        match &self.bindings {
            Some(Bindings::V0_1(bindings)) => Some((bindings, &mut self.store)),
            _ => None,
        }
    }

    /// The 0.1 form of the call's configuration.
    fn config_v0_1(&self, config: &CallConfig) -> v0_1::llmhost::provider::types::ProviderConfig {
        v0_1::llmhost::provider::types::ProviderConfig {
            api_key: config.key_for_plugin(),
            base_url: config.base_url.clone(),
            timeout_ms: u32::try_from(config.timeout.as_millis()).unwrap_or(u32::MAX),
            extra_headers: config.extra_headers.clone(),
        }
    }

    fn not_initialised() -> Error {
        Error::Internal("instance not initialised".into())
    }

    /// A 0.1 plugin cannot carry vendor parameters: refused, not dropped.
    fn refuse_vendor_params_v0_1(&self, request: &ChatRequest) -> Result<(), Error> {
        if request.vendor_params.is_some() {
            return Err(Error::InvalidConfig(format!(
                "{}: vendor parameters need a contract 0.2 plugin; this one speaks 0.1",
                self.provider
            )));
        }
        Ok(())
    }

    /// The id of the provider this instance runs.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The plugin's manifest.
    pub async fn info(&mut self) -> Result<ProviderInfo, Error> {
        match &self.bindings {
            Some(Bindings::V0_1(bindings)) => {
                let result = bindings
                    .llmhost_provider_provider()
                    .call_info(&mut self.store)
                    .await;
                let info = self.finish(result.map(Ok::<_, ProviderError>))?;
                Ok(convert::v0_1::provider_info(info))
            }
            Some(Bindings::V0_2(_)) => exchange::info(self).await,
            None => Err(Self::not_initialised()),
        }
    }

    /// A complete answer.
    pub async fn chat(
        &mut self,
        config: &CallConfig,
        request: &ChatRequest,
    ) -> Result<ChatResponse, Error> {
        if matches!(self.bindings, Some(Bindings::V0_2(_))) {
            return exchange::chat(self, config, request).await;
        }
        self.refuse_vendor_params_v0_1(request)?;
        let guest_config = self.config_v0_1(config);
        let guest_request = convert::v0_1::chat_request(request);
        let (bindings, store) = self.v0_1().ok_or_else(Self::not_initialised)?;
        let result = bindings
            .llmhost_provider_provider()
            .call_chat(store, &guest_config, &guest_request)
            .await;
        self.finish(result).map(Into::into)
    }

    /// Starts a stream; read it with [`Instance::next_chunk`].
    pub async fn start_stream(
        &mut self,
        config: &CallConfig,
        request: &ChatRequest,
    ) -> Result<StreamHandle, Error> {
        if matches!(self.bindings, Some(Bindings::V0_2(_))) {
            return exchange::start_stream(self, config, request)
                .await
                .map(|stream| StreamHandle(Handle::V0_2(Box::new(stream))));
        }
        self.refuse_vendor_params_v0_1(request)?;
        let guest_config = self.config_v0_1(config);
        let guest_request = convert::v0_1::chat_request(request);
        let (bindings, store) = self.v0_1().ok_or_else(Self::not_initialised)?;
        let result = bindings
            .llmhost_provider_provider()
            .call_stream(store, &guest_config, &guest_request)
            .await;
        self.finish(result)
            .map(|resource| StreamHandle(Handle::V0_1(resource)))
    }

    /// The next chunk of a stream started on this instance.
    pub async fn next_chunk(&mut self, stream: &mut StreamHandle) -> Result<Option<Chunk>, Error> {
        match &mut stream.0 {
            Handle::V0_1(resource) => {
                let resource = *resource;
                let (bindings, store) = self.v0_1().ok_or_else(Self::not_initialised)?;
                let result = bindings
                    .llmhost_provider_provider()
                    .chat_stream()
                    .call_next(store, resource)
                    .await;
                self.finish(result).map(|chunk| chunk.map(Into::into))
            }
            Handle::V0_2(stream) => exchange::next_chunk(self, stream).await,
        }
    }

    /// Token count.
    pub async fn count_tokens(
        &mut self,
        config: &CallConfig,
        model: &str,
        input: &TokenInput,
    ) -> Result<TokenCount, Error> {
        if matches!(self.bindings, Some(Bindings::V0_2(_))) {
            return exchange::count_tokens(self, config, model, input).await;
        }
        let guest_config = self.config_v0_1(config);
        let guest_input = input.into();
        let (bindings, store) = self.v0_1().ok_or_else(Self::not_initialised)?;
        let result = bindings
            .llmhost_provider_provider()
            .call_count_tokens(store, &guest_config, model, &guest_input)
            .await;
        self.finish(result).map(Into::into)
    }

    /// Health check.
    pub async fn health_check(&mut self, config: &CallConfig) -> Result<HealthReport, Error> {
        if matches!(self.bindings, Some(Bindings::V0_2(_))) {
            return exchange::health_check(self, config).await;
        }
        let guest_config = self.config_v0_1(config);
        let (bindings, store) = self.v0_1().ok_or_else(Self::not_initialised)?;
        let result = bindings
            .llmhost_provider_provider()
            .call_health_check(store, &guest_config)
            .await;
        self.finish(result).map(Into::into)
    }
}

/// A stream in progress on an [`Instance`].
pub struct StreamHandle(Handle);

enum Handle {
    /// The plugin's `chat-stream` resource.
    V0_1(ResourceAny),
    /// The host reads the body and feeds the plugin's decoder.
    V0_2(Box<exchange::Stream>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ProviderInfo {
        let mut info = ProviderInfo::new("tinyllm");
        info.name = "Tiny".into();
        info.version = "1.0".into();
        info.default_base_url = "https://api.tiny.example/v1".into();
        info.api_key_env = vec!["LLMHOST_TINYLLM_API_KEY".into()];
        info.hosts = vec!["api.tiny.example".into()];
        info
    }

    #[test]
    fn a_manifest_that_could_rewrite_an_operators_terminal_is_refused() {
        assert!(validate_info(&info()).is_ok());
        let mut escaping = info();
        // Erase the line and move the cursor up: a review screen rewritten.
        escaping.name = "Tiny\x1b[2K\x1b[1A  hosts none".into();
        let refused = validate_info(&escaping).expect_err("refused");
        assert!(refused.contains("control characters"), "{refused}");
        assert!(!refused.contains('\x1b'), "the refusal shows it escaped");
        let mut bidi = info();
        bidi.hosts = vec!["api.tiny.example\u{202e}moc.elgoog".into()];
        assert!(validate_info(&bidi).is_err());
    }
}
