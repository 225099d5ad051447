//! What the CLI prints: JSON objects for scripts, tables and lines for
//! people, and the error report.

use crate::types::{ChatResponse, Usage};
use crate::{CompileSource, Error, Host, PluginOrigin};
use llmhost_registry::Pricing;
use llmhost_registry::rust_decimal::Decimal;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::time::Duration;

/// A failed command.
#[derive(Debug)]
pub struct Fail(pub Error);

impl From<Error> for Fail {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl Fail {
    /// Prints the error (JSON on stdout or text on stderr) and returns the
    /// exit code.
    pub fn report(self, json: bool) -> i32 {
        let error = self.0;
        if json {
            let mut object = json!({"kind": error.kind(), "message": error.to_string()});
            if let Some(detail) = error.detail() {
                object["status"] = json!(detail.status);
                object["vendor_code"] = json!(detail.vendor_code);
                object["request_id"] = json!(detail.request_id);
                object["retry_after_ms"] = json!(detail.retry_after_ms);
            }
            print_json(&json!({ "error": object }));
        } else {
            eprintln!("error: {error}");
        }
        match error {
            Error::InvalidConfig(_)
            | Error::UnknownProvider(_)
            | Error::UnknownModel { .. }
            | Error::Validation { .. }
            | Error::NotFound { .. }
            | Error::Conflict(_) => 2,
            _ => 1,
        }
    }
}

/// Prints one JSON value on a line.
pub fn print_json(value: &Value) {
    outln!("{value}");
}

/// The `chat --json` object.
pub fn chat_json(
    provider: &str,
    model: &str,
    response: &ChatResponse,
    cost: Option<Decimal>,
    latency: Duration,
) -> Value {
    let mut object = json!({
        "provider": provider,
        "model": model,
        "content": response.content,
        "reasoning_content": response.reasoning_content,
        "finish_reason": response.finish_reason.as_str(),
        "usage": {
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "estimated": response.usage.estimated,
        },
        "cost_usd": cost.map(|c| c.to_string()),
        "latency_ms": latency.as_millis() as u64,
    });
    if !response.tool_calls.is_empty() {
        object["tool_calls"] = response
            .tool_calls
            .iter()
            .map(|call| json!({"id": call.id, "name": call.name, "arguments": call.arguments}))
            .collect();
    }
    object
}

/// A one-line summary on stderr, for people at a terminal.
pub fn summary_line(
    provider: &str,
    model: &str,
    usage: &Usage,
    cost: Option<Decimal>,
    latency: Duration,
) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let estimate = if usage.estimated { " (estimated)" } else { "" };
    let cost = cost.map_or_else(|| "cost unknown".to_owned(), |c| format!("${c}"));
    eprintln!(
        "[{provider} {model} | {} in, {} out{estimate} | {cost} | {} ms]",
        usage.input_tokens,
        usage.output_tokens,
        latency.as_millis()
    );
}

fn price(micros: u64) -> String {
    Pricing::per_million_usd(micros).normalize().to_string()
}

/// `llmhost models`.
pub fn models(host: &Host, provider: Option<&str>, json: bool) -> Result<(), super::Fail> {
    if let Some(id) = provider
        && host.provider_info(id).is_none()
    {
        return Err(Error::UnknownProvider(id.to_owned()).into());
    }
    let entries: Vec<_> = host
        .catalogue()
        .all()
        .filter(|m| provider.is_none_or(|p| m.provider == p))
        .collect();
    if json {
        let list: Vec<Value> = entries
            .iter()
            .map(|m| {
                json!({
                    "provider": m.provider,
                    "model": m.id,
                    "display_name": m.display_name,
                    "context_window": m.context_window,
                    "max_output_tokens": m.max_output_tokens,
                    "input_usd_per_mtok": price(m.pricing.base.input),
                    "output_usd_per_mtok": price(m.pricing.base.output),
                    "cache_read_usd_per_mtok": m.pricing.base.cache_read.map(price),
                    "cache_write_usd_per_mtok": m.pricing.base.cache_write.map(price),
                    "cache_write_hour_usd_per_mtok": m.pricing.base.cache_write_hour.map(price),
                    "tiers": m.pricing.tiers.iter().map(|tier| json!({
                        "above_input_tokens": tier.above_input_tokens,
                        "prices": prices_json(&tier.prices, price),
                    })).collect::<Vec<_>>(),
                    "off_peak": m.pricing.off_peak.iter().map(|window| json!({
                        "start_utc": clock(window.start_minute),
                        "end_utc": clock(window.end_minute),
                        "prices": prices_json(&window.prices, price),
                    })).collect::<Vec<_>>(),
                    "capabilities": m.capabilities,
                    "tokenizer": m.tokenizer,
                    "tokenizer_exact": m.tokenizer_exact,
                    "requests_per_minute": m.rate_limits.requests_per_minute,
                    "tokens_per_minute": m.rate_limits.tokens_per_minute,
                })
            })
            .collect();
        print_json(&Value::Array(list));
        return Ok(());
    }
    outln!(
        "{:<10} {:<26} {:>10} {:>9} {:>9} {:>9}  capabilities",
        "PROVIDER",
        "MODEL",
        "CONTEXT",
        "MAX OUT",
        "IN $/M",
        "OUT $/M"
    );
    for m in entries {
        outln!(
            "{:<10} {:<26} {:>10} {:>9} {:>9} {:>9}  {}",
            m.provider,
            m.id,
            m.context_window,
            m.max_output_tokens,
            price(m.pricing.base.input),
            price(m.pricing.base.output),
            m.capabilities.join(",")
        );
    }
    Ok(())
}

/// `llmhost plugins`.
pub fn plugins(host: &Host, json: bool) -> Result<(), super::Fail> {
    let plugins = host.plugins();
    let origin = |o: &PluginOrigin| match o {
        PluginOrigin::BuiltIn => "built-in".to_owned(),
        PluginOrigin::File(path) => path.display().to_string(),
    };
    let compile = |c: CompileSource| match c {
        CompileSource::Cache => "cache",
        CompileSource::Compiled => "compiled",
    };
    if json {
        let list: Vec<Value> = plugins
            .iter()
            .map(|p| {
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
            })
            .collect();
        let errors: Vec<Value> = host
            .load_errors()
            .iter()
            .map(|e| json!({"kind": e.kind(), "message": e.to_string()}))
            .collect();
        print_json(&json!({"plugins": list, "errors": errors}));
        return Ok(());
    }
    for p in &plugins {
        outln!(
            "{:<12} {:<8} {:<28} {} models, {} in {:.1} ms ({}), contract {}, hosts: {}",
            p.id,
            p.version,
            p.name,
            p.models,
            compile(p.compile),
            p.load_time.as_secs_f64() * 1000.0,
            origin(&p.origin),
            p.wit_version,
            if !p.installed {
                "none: no install record, it reaches nothing".to_owned()
            } else if p.hosts.is_empty() {
                "configured base URL only".to_owned()
            } else {
                p.hosts.join(", ")
            }
        );
    }
    Ok(())
}

/// One price set of a model, as `models --json` prints it.
fn prices_json(prices: &llmhost_registry::Prices, price: impl Fn(u64) -> String) -> Value {
    json!({
        "input_usd_per_mtok": price(prices.input),
        "output_usd_per_mtok": price(prices.output),
        "cache_read_usd_per_mtok": prices.cache_read.map(&price),
        "cache_write_usd_per_mtok": prices.cache_write.map(&price),
        "cache_write_hour_usd_per_mtok": prices.cache_write_hour.map(&price),
    })
}

/// Minutes after midnight as `HH:MM`.
fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}
