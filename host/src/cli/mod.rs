//! The `llmhost` command line. Human output by default, one JSON object on
//! stdout with `--json`; failures exit non-zero and, with `--json`, print
//! `{"error":{"kind","message"}}`.

/// `println!` that ignores a closed stdout (`llmhost models | head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod admin;
mod admin_tokens;
mod cache;
mod demo;
mod experiments;
mod migrate;
mod output;
mod plugins;
mod serve;
mod virtual_keys;

use crate::types::{ChatRequest, Chunk, Message, TokenInput};
use crate::{ConfigService, Error, Host, Settings, Target};
use clap::{Args, Parser, Subcommand};
use output::{Fail, print_json};
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Serve LLM requests through provider plugins compiled to WebAssembly
/// components.
///
/// Providers are components exporting the llm-provider world (see wit/ in
/// the source tree). The built-in ones are compiled into this binary; any
/// *.wasm in the plugin directory is loaded too, and replaces a built-in
/// with the same provider id. API keys and base URLs come from the flags,
/// else from each provider's environment variables (OPENAI_API_KEY,
/// OPENAI_BASE_URL, ...), else the provider's defaults.
#[derive(Debug, Parser)]
#[command(
    name = "llmhost",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Print one JSON object (errors: {"error":{"kind","message"}}).
    #[arg(long, global = true)]
    json: bool,
    /// Settings file [default: ./llmhost.toml when present].
    #[arg(long, global = true, env = "LLMHOST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database of agents, configs and usage: a SQLite file, or a
    /// postgres:// URL, with ?sslmode=require for TLS (disable, prefer
    /// [the default], require, verify-ca, verify-full) [default: ./llmhost.db].
    #[arg(
        long,
        global = true,
        env = "LLMHOST_DB",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    db: Option<PathBuf>,
    /// PEM file of the CA certificates that sign the PostgreSQL server's
    /// TLS certificate, trusted besides the public roots (sslrootcert= in
    /// the URL wins).
    #[arg(long, global = true, env = "LLMHOST_DB_CA_FILE", value_name = "FILE")]
    db_ca_file: Option<PathBuf>,
    /// File holding the encryption key of stored API keys, used when
    /// LLMHOST_ENCRYPTION_KEY is not set [default: ~/.config/llmhost/encryption.key].
    #[arg(long, global = true, env = "LLMHOST_KEY_FILE", value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Directory of provider plugins (*.wasm) to load.
    #[arg(long, global = true, env = "LLMHOST_PLUGINS", value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Where compiled components are cached [default: ~/.cache/llmhost/components].
    #[arg(long, global = true, env = "LLMHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every component at start instead of using the cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// TOML file correcting or adding models and prices (see the README).
    #[arg(long, global = true, env = "LLMHOST_MODELS", value_name = "FILE")]
    models: Option<PathBuf>,
    /// Refuse models missing from the catalogue instead of sending them
    /// with an unknown cost.
    #[arg(
        long,
        global = true,
        env = "LLMHOST_STRICT_MODELS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    strict_models: bool,
    /// Log more to stderr (-v: info, -vv: debug). LLMHOST_LOG takes a
    /// tracing filter for finer control.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a prompt and print the answer.
    Chat(ChatArgs),
    /// Count the tokens of a text with a model's tokenizer.
    Tokens(TokensArgs),
    /// List every model of the loaded providers with limits and prices.
    Models(ModelsArgs),
    /// Check that a provider answers and accepts the key.
    Health(HealthArgs),
    /// Provider plugins: list (the default), inspect, install, remove.
    Plugins {
        #[command(subcommand)]
        command: Option<plugins::PluginsCommand>,
    },
    /// The compiled-component cache: show (the default) or prune.
    Cache {
        #[command(subcommand)]
        command: Option<cache::CacheCommand>,
    },
    /// Run chat, stream, token count and health through every provider
    /// against the built-in vendor simulator: no keys, no network.
    Demo,
    /// Create the database and, if no encryption key is configured, a key
    /// file (mode 0600) for stored API keys.
    Init,
    /// Migrate the database to this llmhost's schema (or `--to N`, up or
    /// down) and print the versions. PostgreSQL databases are migrated
    /// only by this command, once per upgrade, not by each replica.
    Migrate(migrate::MigrateArgs),
    /// Manage agents: named consumers of LLMs with their own configs.
    #[command(subcommand)]
    Agents(admin::AgentsCommand),
    /// Manage an agent's LLM configs (provider, model, parameters, key).
    #[command(subcommand)]
    Configs(admin::ConfigsCommand),
    /// Manage the encryption key of stored API keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// The gateway's virtual keys: create (shown once), list, revoke.
    #[command(subcommand)]
    VirtualKeys(virtual_keys::VirtualKeysCommand),
    /// Tokens of the admin API and the web console: create (shown once),
    /// list, revoke.
    #[command(subcommand)]
    AdminTokens(admin_tokens::AdminTokensCommand),
    /// A/B experiments of agents: create, list, stop, report.
    #[command(subcommand)]
    Experiments(experiments::ExperimentsCommand),
    /// Tokens and cost per agent, provider and model; with --agent or
    /// --virtual-key, the spend against the budget too.
    Usage(admin::UsageArgs),
    /// Serve the vendor simulator for offline tests and CI.
    Simulate(SimulateArgs),
    /// Run the gateway: OpenAI- and Anthropic-compatible HTTP endpoints
    /// (POST /v1/chat/completions, POST /v1/messages, GET /v1/models, ...)
    /// in front of every provider. `model` is PROVIDER/MODEL or agent:NAME.
    /// Clients authenticate with LLMHOST_MASTER_KEY or a virtual key.
    Serve(serve::ServeArgs),
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Provider id (see `llmhost plugins`).
    #[arg(long, short = 'p', value_name = "ID")]
    provider: String,
    #[command(flatten)]
    reach: ReachArgs,
}

#[derive(Debug, Args)]
struct ReachArgs {
    /// Base URL of the vendor API [default: the provider's env var, else
    /// llmhost.toml, else the provider's default].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// API key [default: the provider's env var, e.g. OPENAI_API_KEY]. Give
    /// `-` to read it from standard input: a key on the command line is
    /// visible to every user in `ps` and lands in shell history.
    #[arg(long, value_name = "KEY|-", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds to wait for the answer (for streams: for each piece)
    /// [default: timeout_secs of llmhost.toml, else 120].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
}

impl ReachArgs {
    fn target(&self, provider: &str) -> Result<Target, Error> {
        let mut target = Target::new(provider);
        if let Some(timeout) = self.timeout {
            if !(timeout.is_finite() && timeout > 0.0 && timeout <= 86_400.0) {
                return Err(Error::InvalidConfig(
                    "--timeout must be a number of seconds between 0 and 86400".into(),
                ));
            }
            target = target.timeout(Duration::from_secs_f64(timeout));
        }
        if let Some(url) = &self.base_url {
            target = target.base_url(url);
        }
        if let Some(key) = &self.api_key {
            let key = admin::read_secret(key, "the API key", "api_key")?;
            target.api_key = Some(key);
        }
        Ok(target)
    }
}

impl TargetArgs {
    fn target(&self) -> Result<Target, Error> {
        self.reach.target(&self.provider)
    }
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// Answer as this agent: its primary config gives provider, model,
    /// parameters, base URL and key, and the call is recorded in usage.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["provider", "model", "base_url", "api_key"])]
    agent: Option<String>,
    /// Provider id (see `llmhost plugins`).
    #[arg(
        long,
        short = 'p',
        value_name = "ID",
        required_unless_present = "agent"
    )]
    provider: Option<String>,
    #[command(flatten)]
    reach: ReachArgs,
    /// Model id.
    #[arg(long, short = 'm', required_unless_present = "agent")]
    model: Option<String>,
    /// System instructions.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Most tokens to generate.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Nucleus sampling.
    #[arg(long)]
    top_p: Option<f32>,
    /// Vendor parameters the request has no flag for, as a JSON object
    /// merged into the vendor's request body (e.g. '{"seed": 7}').
    #[arg(long, value_name = "JSON", value_parser = vendor_params)]
    vendor_params: Option<String>,
    /// End-user id sent with the request; an agent's experiment with
    /// sticky user gives each user the same variant every time.
    #[arg(long, value_name = "ID")]
    user: Option<String>,
    /// Stream the answer.
    #[arg(long)]
    stream: bool,
    /// The prompt.
    prompt: String,
}

/// Checks `--vendor-params` is a JSON object.
fn vendor_params(text: &str) -> Result<String, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(text.to_owned()),
        Ok(_) => Err("must be a JSON object, such as '{\"seed\": 7}'".into()),
        Err(err) => Err(format!("not valid JSON: {err}")),
    }
}

#[derive(Debug, Args)]
struct TokensArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Model id (picks the tokenizer).
    #[arg(long, short = 'm')]
    model: String,
    /// The text to count.
    text: String,
}

#[derive(Debug, Args)]
struct ModelsArgs {
    /// Only this provider.
    #[arg(long, short = 'p', value_name = "ID")]
    provider: Option<String>,
}

#[derive(Debug, Args)]
struct HealthArgs {
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089", value_name = "ADDR")]
    listen: SocketAddr,
}

impl Cli {
    /// Parses the process arguments. Bad arguments exit with code 2 and a
    /// usage message, or with `--json` a JSON error of kind `usage`.
    pub fn from_env() -> Self {
        match Self::try_parse() {
            Ok(cli) => cli,
            Err(err) => {
                use clap::error::ErrorKind;
                let wants_json = std::env::args().any(|a| a == "--json");
                if wants_json
                    && !matches!(
                        err.kind(),
                        ErrorKind::DisplayHelp
                            | ErrorKind::DisplayVersion
                            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    )
                {
                    let message = err.kind().as_str().map_or_else(
                        || err.to_string(),
                        |kind| {
                            let text = err.to_string();
                            let first = text.lines().next().unwrap_or(kind);
                            first.trim_start_matches("error: ").to_owned()
                        },
                    );
                    print_json(
                        &json!({"error": {"kind": crate::ErrorKind::Usage, "message": message}}),
                    );
                    std::process::exit(2);
                }
                err.exit()
            }
        }
    }

    /// Runs the command; returns the process exit code.
    pub async fn run(self) -> i32 {
        let json_logs = matches!(
            &self.command,
            Command::Serve(args) if args.log_format == serve::LogFormat::Json
        );
        // The gateway logs each request at info, from a writer thread of
        // its own: a worker never waits on stderr.
        let serving = matches!(self.command, Command::Serve(_));
        let verbose = if serving {
            self.global.verbose.max(1)
        } else {
            self.global.verbose
        };
        // Held to the end: dropping it writes out what is queued.
        let _log_writer = init_logging(verbose, json_logs, serving);
        let json = self.global.json;
        match self.dispatch().await {
            Ok(()) => 0,
            Err(fail) => fail.report(json),
        }
    }

    /// The settings: file, environment, then these flags on top.
    fn settings(global: &GlobalArgs) -> Result<Settings, Error> {
        let mut settings = Settings::load(global.config.as_deref())?;
        if let Some(db) = &global.db {
            settings.database = db.clone().into();
            settings.database.set_pool_size(settings.database_pool_size);
        }
        if let Some(ca) = &global.db_ca_file {
            settings.database_ca_file = Some(ca.clone());
        }
        settings
            .database
            .set_ca_file(settings.database_ca_file.clone());
        if let Some(key_file) = &global.key_file {
            settings.key_file = key_file.clone();
        }
        if let Some(dir) = &global.plugins {
            settings.plugins = Some(dir.clone());
        }
        if let Some(dir) = &global.cache_dir {
            settings.cache_dir = Some(dir.clone());
        }
        if let Some(path) = &global.models {
            settings.models = Some(path.clone());
        }
        if global.strict_models {
            settings.strict_models = true;
        }
        Ok(settings)
    }

    async fn host(global: &GlobalArgs, settings: &Settings) -> Result<Host, Fail> {
        let mut builder = Host::builder().settings(settings)?;
        if global.no_cache {
            builder = builder.cache_dir(None);
        }
        let host = builder.build().await?;
        for error in host.load_errors() {
            eprintln!("warning: {error}");
        }
        Ok(host)
    }

    async fn dispatch(self) -> Result<(), Fail> {
        let json = self.global.json;
        if let Command::Simulate(args) = self.command {
            return simulate(args).await;
        }
        let settings = Self::settings(&self.global)?;
        let global = &self.global;
        match self.command {
            Command::Simulate(_) => unreachable!("handled above"),
            Command::Init => admin::init(&settings, json).await,
            Command::Migrate(args) => migrate::run(&settings, args, json).await,
            Command::Chat(args) if args.agent.is_some() => {
                let service =
                    admin::service(Self::host(global, &settings).await?, &settings).await?;
                agent_chat(&service, args, json).await
            }
            Command::Chat(args) => chat(&Self::host(global, &settings).await?, args, json).await,
            Command::Tokens(args) => {
                tokens(&Self::host(global, &settings).await?, args, json).await
            }
            Command::Models(args) => output::models(
                &Self::host(global, &settings).await?,
                args.provider.as_deref(),
                json,
            ),
            Command::Health(args) => {
                health(&Self::host(global, &settings).await?, args, json).await
            }
            Command::Plugins { command } => {
                // A first install creates the plugin directory.
                if let (Some(plugins::PluginsCommand::Install { .. }), Some(dir)) =
                    (&command, &settings.plugins)
                {
                    std::fs::create_dir_all(dir).map_err(|err| {
                        Error::InvalidConfig(format!("cannot create {}: {err}", dir.display()))
                    })?;
                }
                let host = Self::host(global, &settings).await?;
                plugins::run(&host, settings.plugins.as_deref(), command, json).await
            }
            Command::Cache { command } => {
                cache::run(&Self::host(global, &settings).await?, command, json)
            }
            Command::Demo => demo::run(&Self::host(global, &settings).await?, json).await,
            Command::Agents(command) => {
                let service =
                    admin::service(Self::host(global, &settings).await?, &settings).await?;
                admin::agents(&service, command, json).await
            }
            Command::Configs(command) => {
                let service =
                    admin::service(Self::host(global, &settings).await?, &settings).await?;
                admin::configs(&service, command, json).await
            }
            Command::Keys(command) => {
                let host = Self::host(global, &settings).await?;
                admin::keys(host, &settings, command, json).await
            }
            Command::Serve(args) => {
                let mut builder = Host::builder().settings(&settings)?;
                if global.no_cache {
                    builder = builder.cache_dir(None);
                }
                serve::run(builder, &settings, args).await
            }
            Command::VirtualKeys(command) => virtual_keys::run(&settings, command, json).await,
            Command::AdminTokens(command) => admin_tokens::run(&settings, command, json).await,
            Command::Experiments(command) => {
                let service =
                    admin::service(Self::host(global, &settings).await?, &settings).await?;
                experiments::run(&service, command, json).await
            }
            Command::Usage(args) => {
                let service =
                    admin::service(Self::host(global, &settings).await?, &settings).await?;
                admin::usage(&service, args, json).await
            }
        }
    }
}

/// Logs to stderr; with `background`, through a writer thread (queued
/// lines are never dropped: a full queue makes the logger wait), whose
/// guard flushes it when dropped.
fn init_logging(
    verbose: u8,
    json: bool,
    background: bool,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("LLMHOST_LOG")
        .unwrap_or_else(|_| format!("{default},cranelift=warn,wasmtime=warn"));
    let (writer, guard) = if background {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(std::io::stderr());
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    guard
}

fn build_request(args: &ChatArgs, model: &str) -> ChatRequest {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(&args.prompt));
    let mut request = ChatRequest::new(model, messages);
    request.temperature = args.temperature;
    request.max_tokens = args.max_tokens;
    request.top_p = args.top_p;
    request.vendor_params = args.vendor_params.clone();
    request.user = args.user.clone();
    request
}

/// Writes a streamed chunk for people: text to stdout, reasoning to
/// stderr.
fn show_chunk(chunk: &Chunk) {
    match chunk {
        Chunk::Text(text) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        Chunk::Reasoning(text) => eprint!("{text}"),
        _ => {}
    }
}

/// Prints a finished answer.
fn show_answer(outcome: &crate::ChatOutcome, model: &str, json: bool, extra: Option<Value>) {
    if json {
        let mut object = output::chat_json(
            &outcome.provider,
            model,
            &outcome.response,
            outcome.cost_usd,
            outcome.latency,
        );
        if let (Some(Value::Object(extra)), Value::Object(object)) = (extra, &mut object) {
            object.extend(extra);
        }
        print_json(&object);
    } else {
        if let Some(reasoning) = &outcome.response.reasoning_content {
            eprintln!("[reasoning] {reasoning}");
        }
        outln!("{}", outcome.response.content);
        output::summary_line(
            &outcome.provider,
            model,
            &outcome.response.usage,
            outcome.cost_usd,
            outcome.latency,
        );
    }
}

async fn chat(host: &Host, args: ChatArgs, json: bool) -> Result<(), Fail> {
    let provider = args.provider.clone().unwrap_or_default();
    let model = args.model.clone().unwrap_or_default();
    let target = args.reach.target(&provider)?;
    let request = build_request(&args, &model);
    if !args.stream {
        let outcome = host.chat(&target, &request).await?;
        show_answer(&outcome, &model, json, None);
        return Ok(());
    }
    let mut stream = host.stream(&target, &request).await?;
    let mut collected = crate::StreamCollector::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !json {
            show_chunk(&chunk);
        }
        collected.add(chunk);
    }
    let usage = stream
        .usage()
        .unwrap_or_else(crate::types::Usage::unreported);
    if json {
        let response = collected.into_response(&model, usage);
        print_json(&output::chat_json(
            stream.provider(),
            &model,
            &response,
            stream.cost_usd(),
            stream.elapsed(),
        ));
    } else {
        outln!("");
        output::summary_line(
            stream.provider(),
            &model,
            &usage,
            stream.cost_usd(),
            stream.elapsed(),
        );
    }
    Ok(())
}

async fn agent_chat(service: &ConfigService, args: ChatArgs, json: bool) -> Result<(), Fail> {
    let answered = agent_answer(service, args, json).await;
    // Usage is written off the request path: wait for it before exiting,
    // failed attempts' included.
    let flushed = service.flush_usage().await;
    answered?;
    Ok(flushed?)
}

async fn agent_answer(service: &ConfigService, args: ChatArgs, json: bool) -> Result<(), Fail> {
    let agent = args.agent.clone().unwrap_or_default();
    let request = build_request(&args, "");
    if !args.stream {
        let answer = service.chat(&agent, request).await?;
        let mut extra = json!({
            "agent": answer.agent,
            "config_id": answer.config_id,
            "fallback": answer.fallback,
            "attempts": answer.attempts,
            "experiment": answer.experiment.as_ref().map(|e| &e.0),
            "variant": answer.experiment.as_ref().map(|e| &e.1),
        });
        if let Some(status) = answer.cache {
            extra["cache"] = json!(status.as_str());
        }
        show_answer(&answer.outcome, &answer.model, json, Some(extra));
        return Ok(());
    }
    let mut stream = service.stream(&agent, request).await?;
    let mut collected = crate::StreamCollector::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !json {
            show_chunk(&chunk);
        }
        collected.add(chunk);
    }
    let usage = stream
        .usage()
        .unwrap_or_else(crate::types::Usage::unreported);
    let model = stream.model().to_owned();
    if json {
        let response = collected.into_response(&model, usage);
        let mut object = output::chat_json(
            stream.provider(),
            &model,
            &response,
            stream.cost_usd(),
            stream.elapsed(),
        );
        object["agent"] = json!(agent);
        object["config_id"] = json!(stream.config_id());
        object["fallback"] = json!(stream.fallback());
        object["attempts"] = json!(stream.attempts());
        object["experiment"] = json!(stream.experiment().map(|e| &e.0));
        object["variant"] = json!(stream.experiment().map(|e| &e.1));
        if let Some(status) = stream.cache_status() {
            // The cache is the process's own: one `chat` run misses.
            object["cache"] = json!(status.as_str());
        }
        print_json(&object);
    } else {
        outln!("");
        output::summary_line(
            stream.provider(),
            &model,
            &usage,
            stream.cost_usd(),
            stream.elapsed(),
        );
    }
    Ok(())
}

async fn tokens(host: &Host, args: TokensArgs, json: bool) -> Result<(), Fail> {
    let target = args.target.target()?;
    let count = host
        .count_tokens(&target, &args.model, &TokenInput::Text(args.text.clone()))
        .await?;
    if json {
        print_json(&json!({
            "tokens": count.tokens,
            "estimated": count.estimated,
            "encoding": count.encoding,
        }));
    } else {
        let note = if count.estimated { " (estimate)" } else { "" };
        outln!("{} tokens{note} [{}]", count.tokens, count.encoding);
    }
    Ok(())
}

async fn health(host: &Host, args: HealthArgs, json: bool) -> Result<(), Fail> {
    let target = args.target.target()?;
    let outcome = host.health(&target).await?;
    if json {
        print_json(&json!({
            "provider": outcome.provider,
            "healthy": true,
            "latency_ms": outcome.latency.as_millis() as u64,
            "models_available": outcome.report.models_available,
            "detail": outcome.report.detail,
        }));
    } else {
        outln!(
            "{}: healthy ({} ms) - {}",
            outcome.provider,
            outcome.latency.as_millis(),
            outcome.report.detail
        );
    }
    Ok(())
}

async fn simulate(args: SimulateArgs) -> Result<(), Fail> {
    let simulator = llmhost_simulator::Simulator::bind(args.listen)
        .await
        .map_err(|err| Error::InvalidConfig(format!("cannot listen on {}: {err}", args.listen)))?;
    outln!(
        "llmhost vendor simulator listening on http://{}",
        simulator.addr()
    );
    for vendor in llmhost_simulator::Vendor::ALL {
        outln!("  {:<10} {}", vendor.prefix(), simulator.base_url(*vendor));
    }
    outln!("Any non-empty API key is accepted. Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();
    simulator.serve_forever().await;
    Ok(())
}
