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

mod demo;
mod output;

use crate::types::{ChatRequest, Chunk, Message, TokenInput};
use crate::{Error, Host, Target};
use clap::{Args, Parser, Subcommand};
use output::{Fail, print_json};
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// List the loaded plugins, where they came from and how they loaded.
    Plugins(JsonArg),
    /// Run chat, stream, token count and health through every provider
    /// against the built-in vendor simulator: no keys, no network.
    Demo(JsonArg),
    /// Serve the vendor simulator for offline tests and CI.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Provider id (see `llmhost plugins`).
    #[arg(long, short = 'p', value_name = "ID")]
    provider: String,
    /// Base URL of the vendor API [default: the provider's env var, else its default].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// API key [default: the provider's env var, e.g. OPENAI_API_KEY].
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds to wait for the answer (for streams: for each piece).
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    timeout: f64,
}

impl TargetArgs {
    fn target(&self) -> Result<Target, Error> {
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 86_400.0) {
            return Err(Error::InvalidConfig(
                "--timeout must be a number of seconds between 0 and 86400".into(),
            ));
        }
        let mut target = Target::new(&self.provider).timeout(Duration::from_secs_f64(self.timeout));
        if let Some(url) = &self.base_url {
            target = target.base_url(url);
        }
        if let Some(key) = &self.api_key {
            target = target.api_key(key);
        }
        Ok(target)
    }
}

#[derive(Debug, Args)]
struct ChatArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Model id.
    #[arg(long, short = 'm')]
    model: String,
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
    /// Stream the answer.
    #[arg(long)]
    stream: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The prompt.
    prompt: String,
}

#[derive(Debug, Args)]
struct TokensArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Model id (picks the tokenizer).
    #[arg(long, short = 'm')]
    model: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The text to count.
    text: String,
}

#[derive(Debug, Args)]
struct ModelsArgs {
    /// Only this provider.
    #[arg(long, short = 'p', value_name = "ID")]
    provider: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct HealthArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089", value_name = "ADDR")]
    listen: SocketAddr,
}

impl Cli {
    /// Parses the process arguments.
    pub fn from_env() -> Self {
        Self::parse()
    }

    /// Runs the command; returns the process exit code.
    pub async fn run(self) -> i32 {
        init_logging(self.global.verbose);
        let json = match &self.command {
            Command::Chat(a) => a.json,
            Command::Tokens(a) => a.json,
            Command::Models(a) => a.json,
            Command::Health(a) => a.json,
            Command::Plugins(a) | Command::Demo(a) => a.json,
            Command::Simulate(_) => false,
        };
        match self.dispatch().await {
            Ok(()) => 0,
            Err(fail) => fail.report(json),
        }
    }

    async fn host(global: &GlobalArgs) -> Result<Host, Fail> {
        let mut builder = Host::builder().ignore_plugin_env();
        if let Some(dir) = &global.plugins {
            builder = builder.plugin_dir(dir);
        }
        if global.no_cache {
            builder = builder.cache_dir(None);
        } else if let Some(dir) = &global.cache_dir {
            builder = builder.cache_dir(Some(dir.clone()));
        }
        if let Some(path) = &global.models {
            let text = std::fs::read_to_string(path).map_err(|err| {
                Error::InvalidConfig(format!(
                    "cannot read model overrides {}: {err}",
                    path.display()
                ))
            })?;
            let overrides = llmhost_registry::ModelOverrides::from_toml(&text)
                .map_err(|err| Error::InvalidConfig(format!("{}: {err}", path.display())))?;
            builder = builder.model_overrides(overrides);
        }
        builder = builder.strict_models(global.strict_models);
        let host = builder.build().await?;
        for error in host.load_errors() {
            eprintln!("warning: {error}");
        }
        Ok(host)
    }

    async fn dispatch(self) -> Result<(), Fail> {
        match self.command {
            Command::Simulate(args) => simulate(args).await,
            Command::Chat(args) => chat(&Self::host(&self.global).await?, args).await,
            Command::Tokens(args) => tokens(&Self::host(&self.global).await?, args).await,
            Command::Models(args) => output::models(
                &Self::host(&self.global).await?,
                args.provider.as_deref(),
                args.json,
            ),
            Command::Health(args) => health(&Self::host(&self.global).await?, args).await,
            Command::Plugins(args) => output::plugins(&Self::host(&self.global).await?, args.json),
            Command::Demo(args) => demo::run(&Self::host(&self.global).await?, args.json).await,
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("LLMHOST_LOG")
        .unwrap_or_else(|_| format!("{default},cranelift=warn,wasmtime=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

fn build_request(args: &ChatArgs) -> ChatRequest {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(&args.prompt));
    let mut request = ChatRequest::new(&args.model, messages);
    request.temperature = args.temperature;
    request.max_tokens = args.max_tokens;
    request.top_p = args.top_p;
    request
}

async fn chat(host: &Host, args: ChatArgs) -> Result<(), Fail> {
    let target = args.target.target()?;
    let request = build_request(&args);
    if !args.stream {
        let outcome = host.chat(&target, &request).await?;
        if args.json {
            print_json(&output::chat_json(
                &outcome.provider,
                &request.model,
                &outcome.response,
                outcome.cost_usd,
                outcome.latency,
            ));
        } else {
            if let Some(reasoning) = &outcome.response.reasoning_content {
                eprintln!("[reasoning] {reasoning}");
            }
            outln!("{}", outcome.response.content);
            output::summary_line(
                &outcome.provider,
                &request.model,
                &outcome.response.usage,
                outcome.cost_usd,
                outcome.latency,
            );
        }
        return Ok(());
    }
    let mut stream = host.stream(&target, &request).await?;
    let mut collected = crate::StreamCollector::default();
    let stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !args.json {
            match &chunk {
                Chunk::Text(text) => {
                    let mut out = stdout.lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
                Chunk::Reasoning(text) => eprint!("{text}"),
                _ => {}
            }
        }
        collected.add(chunk);
    }
    let usage = stream
        .usage()
        .unwrap_or_else(crate::types::Usage::unreported);
    if args.json {
        let response = collected.into_response(&request.model, usage);
        print_json(&output::chat_json(
            stream.provider(),
            &request.model,
            &response,
            stream.cost_usd(),
            stream.elapsed(),
        ));
    } else {
        outln!("");
        output::summary_line(
            stream.provider(),
            &request.model,
            &usage,
            stream.cost_usd(),
            stream.elapsed(),
        );
    }
    Ok(())
}

async fn tokens(host: &Host, args: TokensArgs) -> Result<(), Fail> {
    let target = args.target.target()?;
    let count = host
        .count_tokens(&target, &args.model, &TokenInput::Text(args.text.clone()))
        .await?;
    if args.json {
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

async fn health(host: &Host, args: HealthArgs) -> Result<(), Fail> {
    let target = args.target.target()?;
    let outcome = host.health(&target).await?;
    if args.json {
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
