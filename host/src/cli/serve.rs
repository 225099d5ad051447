//! `llmhost serve`: the gateway.

use super::output::Fail;
use crate::gateway::{Gateway, GatewayOptions, MASTER_KEY_ENV, Metrics, shutdown_signal};
use crate::router::StoreSink;
use crate::service::{ConfigService, VirtualKeys};
use crate::{Error, Host, Settings, Store};
use clap::{Args, ValueEnum};
use secrecy::SecretString;
use std::net::SocketAddr;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per event (for log shippers).
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on [default: [server] listen, else
    /// 127.0.0.1:4000]. A non-loopback address needs a key: set
    /// LLMHOST_MASTER_KEY or create virtual keys.
    #[arg(long, env = "LLMHOST_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Format of the access and event logs on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(
    host_builder: crate::HostBuilder,
    settings: &Settings,
    args: ServeArgs,
) -> Result<(), Fail> {
    let store = Store::open(&settings.database).await?;
    // Budgets, rate limits and revocations shared with other replicas.
    let shared = crate::shared::Redis::connect(&settings.shared)?;
    if let Some(redis) = &shared {
        tracing::info!(
            redis = redis.shown_url(),
            on_unavailable = redis.on_unavailable().as_str(),
            "shared state in Redis"
        );
    }
    if let Some(days) = settings.usage_retain_days {
        crate::store::spawn_usage_retention(store.clone(), days);
    }
    // One router for every call: plain targets and agents share its
    // breakers, rate limits and the batched usage writer.
    let metrics = Metrics::new();
    let host: Host = host_builder
        .usage_sink(metrics.sink(StoreSink::new(store.clone())))
        .shared_state(shared.clone())
        .build()
        .await?;
    for error in host.load_errors() {
        tracing::warn!(error = %error, "plugin not loaded");
    }
    let keyring = super::admin::keyring(settings)?.map(|(keyring, _)| keyring);
    let virtual_keys = keyring
        .as_ref()
        .map(|keyring| VirtualKeys::new(store.clone(), Some(keyring)).with_shared(shared.clone()));
    let service = ConfigService::new(host.clone(), store, keyring);
    let service = service
        .with_router(host.router())
        .with_shared(shared.clone());
    let master_key = std::env::var(MASTER_KEY_ENV)
        .ok()
        .filter(|key| !key.trim().is_empty())
        .map(SecretString::from);
    let options = GatewayOptions {
        listen: args.listen.unwrap_or(settings.server.listen),
        master_key,
        shutdown_grace: settings.server.shutdown_grace,
        max_body_bytes: settings.server.max_body_bytes,
        metrics,
        shared,
    };
    let listen = options.listen;
    let gateway = Gateway::new(service, virtual_keys, options).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|err| Error::InvalidConfig(format!("cannot listen on {listen}: {err}")))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let providers: Vec<String> = host.plugins().into_iter().map(|p| p.id).collect();
    tracing::info!(address = %bound, providers = %providers.join(","), "llmhost gateway listening");
    // The one line a script (or a test) waits for.
    eprintln!("llmhost gateway listening on http://{bound}");
    gateway.serve(listener, shutdown_signal()).await?;
    Ok(())
}
