//! JSON views of the host's plugins and model catalogue, the one shape
//! `llmhost models --json`, `llmhost plugins --json` and the admin API
//! all print.

use crate::host::PluginSummary;
use crate::{CompileSource, Host, PluginOrigin};
use llmhost_registry::{ModelEntry, Prices, Pricing};
use serde_json::{Value, json};

/// Micro-dollars per million tokens as a USD decimal string.
fn price(micros: u64) -> String {
    Pricing::per_million_usd(micros).normalize().to_string()
}

/// One price set, USD per million tokens.
fn prices_json(prices: &Prices) -> Value {
    json!({
        "input_usd_per_mtok": price(prices.input),
        "output_usd_per_mtok": price(prices.output),
        "cache_read_usd_per_mtok": prices.cache_read.map(price),
        "cache_write_usd_per_mtok": prices.cache_write.map(price),
        "cache_write_hour_usd_per_mtok": prices.cache_write_hour.map(price),
    })
}

/// Minutes after midnight as `HH:MM`.
fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A catalogue entry: limits, every price set, capabilities, and whether
/// the operator's overrides file changed it.
pub fn model_json(host: &Host, m: &ModelEntry) -> Value {
    let mut object = json!({
        "provider": m.provider,
        "model": m.id,
        "display_name": m.display_name,
        "context_window": m.context_window,
        "max_output_tokens": m.max_output_tokens,
        "tiers": m.pricing.tiers.iter().map(|tier| json!({
            "above_input_tokens": tier.above_input_tokens,
            "prices": prices_json(&tier.prices),
        })).collect::<Vec<_>>(),
        "off_peak": m.pricing.off_peak.iter().map(|window| json!({
            "start_utc": clock(window.start_minute),
            "end_utc": clock(window.end_minute),
            "prices": prices_json(&window.prices),
        })).collect::<Vec<_>>(),
        "capabilities": m.capabilities,
        "tokenizer": m.tokenizer,
        "tokenizer_exact": m.tokenizer_exact,
        "requests_per_minute": m.rate_limits.requests_per_minute,
        "tokens_per_minute": m.rate_limits.tokens_per_minute,
        "overridden": host.is_overridden(&m.provider, &m.id),
    });
    if let (Value::Object(object), Value::Object(base)) =
        (&mut object, prices_json(&m.pricing.base))
    {
        object.extend(base);
    }
    object
}

/// The catalogue's entries, of `provider` only when given.
pub fn models_json(host: &Host, provider: Option<&str>) -> Vec<Value> {
    host.catalogue()
        .all()
        .filter(|m| provider.is_none_or(|p| m.provider == p))
        .map(|m| model_json(host, m))
        .collect()
}

/// Where a plugin came from: `built-in` or its file.
pub fn origin(origin: &PluginOrigin) -> String {
    match origin {
        PluginOrigin::BuiltIn => "built-in".to_owned(),
        PluginOrigin::File(path) => path.display().to_string(),
    }
}

/// Whether a plugin's compiled code came from the disk cache.
pub fn compile(compile: CompileSource) -> &'static str {
    match compile {
        CompileSource::Cache => "cache",
        CompileSource::Compiled => "compiled",
    }
}

/// A loaded plugin and what it was granted: the hosts it may reach and
/// the environment variables it may read its key and base URL from.
pub fn plugin_json(p: &PluginSummary) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "version": p.version,
        "origin": origin(&p.origin),
        "loaded_from": compile(p.compile),
        "load_ms": p.load_time.as_secs_f64() * 1000.0,
        "models": p.models,
        "wit_version": format!("{}@{}", crate::CONTRACT_PACKAGE, p.wit_version),
        "hosts": p.hosts,
        "installed": p.installed,
        "env": p.env,
    })
}

/// Every loaded plugin, and the plugin files that failed to load.
pub fn plugins_json(host: &Host) -> Value {
    let list: Vec<Value> = host.plugins().iter().map(plugin_json).collect();
    let errors: Vec<Value> = host
        .load_errors()
        .iter()
        .map(|e| json!({"kind": e.kind(), "message": e.to_string()}))
        .collect();
    json!({"plugins": list, "errors": errors})
}
