//! What the CLI prints: JSON objects for scripts, tables and lines for
//! people, and the error report.

use crate::types::{ChatResponse, Usage};
use crate::{Error, Host};
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
        let list = crate::views::models_json(host, provider);
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
    if json {
        print_json(&crate::views::plugins_json(host));
        return Ok(());
    }
    let (origin, compile) = (crate::views::origin, crate::views::compile);
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
