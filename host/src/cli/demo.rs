//! `llmhost demo`: every loaded provider, end to end, against the vendor
//! simulator started in this process. No keys, no network.

use super::output::{Fail, print_json};
use crate::types::{ChatRequest, Chunk, Message, TokenInput};
use crate::{Error, Host, PluginOrigin, Target};
use llmhost_simulator::{Simulator, Vendor};
use serde_json::{Value, json};
use std::time::Duration;

/// Which simulator protocol and model exercise a provider id.
fn scenario(provider: &str) -> Option<(Vendor, &'static str)> {
    match provider {
        "openai" => Some((Vendor::OpenAi, "gpt-4o-mini")),
        "deepseek" => Some((Vendor::DeepSeek, "deepseek-chat")),
        "grok" => Some((Vendor::XAi, "grok-3-mini")),
        "claude" => Some((Vendor::Anthropic, "claude-sonnet-4-5")),
        _ => None,
    }
}

struct Row {
    provider: String,
    model: String,
    answer: String,
    streamed: String,
    tokens: String,
    cost: String,
    latency_ms: u128,
    health: String,
    ok: bool,
}

async fn exercise(host: &Host, sim: &Simulator, provider: &str) -> Result<Row, Error> {
    let (vendor, model) = scenario(provider).ok_or_else(|| {
        Error::InvalidConfig("the simulator does not speak this provider's protocol".into())
    })?;
    let target = Target::new(provider)
        .base_url(sim.base_url(vendor))
        .api_key("llmhost-demo-key")
        .timeout(Duration::from_secs(30));
    let request = ChatRequest::new(
        model,
        vec![
            Message::system("You are a concise assistant."),
            Message::user("Say hello to the llmhost demo."),
        ],
    );
    let outcome = host.chat(&target, &request).await?;
    let mut stream = host.stream(&target, &request).await?;
    let mut pieces = 0;
    while let Some(chunk) = stream.next().await {
        if let Chunk::Text(_) = chunk? {
            pieces += 1;
        }
    }
    let stream_usage = stream.usage();
    let count = host
        .count_tokens(
            &target,
            model,
            &TokenInput::Text(outcome.response.content.clone()),
        )
        .await?;
    let health = host.health(&target).await?;
    let usage = outcome.response.usage;
    Ok(Row {
        provider: provider.to_owned(),
        model: model.to_owned(),
        answer: outcome.response.content.clone(),
        streamed: format!(
            "{pieces} pieces, usage {}",
            stream_usage.map_or_else(
                || "missing".to_owned(),
                |u| format!("{}/{}", u.input_tokens, u.output_tokens)
            )
        ),
        tokens: format!(
            "{} in / {} out; answer = {} {}",
            usage.input_tokens, usage.output_tokens, count.tokens, count.encoding
        ),
        cost: outcome
            .cost_usd
            .map_or_else(|| "unknown".into(), |c| format!("${c}")),
        latency_ms: outcome.latency.as_millis(),
        health: format!("ok ({} ms)", health.latency.as_millis()),
        ok: true,
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}

/// Runs the demo; fails if any provider the simulator speaks fails.
pub async fn run(host: &Host, json: bool) -> Result<(), Fail> {
    let sim = Simulator::start()
        .await
        .map_err(|err| Error::Internal(format!("cannot start the simulator on loopback: {err}")))?;
    // The simulator counts tokens with the same process-wide tables; load
    // them now so the first row's latency is the host's, not table loading.
    let _ = crate::runtime::tokenizer::encoding("o200k_base");
    if !json {
        outln!("llmhost demo: vendor simulator on http://{}\n", sim.addr());
        for plugin in host.plugins() {
            let origin = match &plugin.origin {
                PluginOrigin::BuiltIn => "built-in".to_owned(),
                PluginOrigin::File(path) => path.display().to_string(),
            };
            outln!(
                "plugin {} {} ({origin}): {} in {:.1} ms",
                plugin.id,
                plugin.version,
                match plugin.compile {
                    crate::CompileSource::Cache => "loaded from the compiled-component cache",
                    crate::CompileSource::Compiled => "compiled",
                },
                plugin.load_time.as_secs_f64() * 1000.0
            );
        }
        outln!("");
    }
    let mut rows = Vec::new();
    let mut failures = 0;
    for plugin in host.plugins() {
        if scenario(&plugin.id).is_none() {
            rows.push(Row {
                provider: plugin.id.clone(),
                model: "-".into(),
                answer: "skipped: the simulator does not speak this provider's protocol".into(),
                streamed: "-".into(),
                tokens: "-".into(),
                cost: "-".into(),
                latency_ms: 0,
                health: "-".into(),
                ok: true,
            });
            continue;
        }
        match exercise(host, &sim, &plugin.id).await {
            Ok(row) => rows.push(row),
            Err(err) => {
                failures += 1;
                rows.push(Row {
                    provider: plugin.id.clone(),
                    model: "-".into(),
                    answer: format!("FAILED: {err}"),
                    streamed: "-".into(),
                    tokens: "-".into(),
                    cost: "-".into(),
                    latency_ms: 0,
                    health: "-".into(),
                    ok: false,
                });
            }
        }
    }
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "provider": r.provider, "model": r.model, "ok": r.ok, "answer": r.answer,
                    "stream": r.streamed, "tokens": r.tokens, "cost_usd": r.cost,
                    "latency_ms": r.latency_ms as u64, "health": r.health,
                })
            })
            .collect();
        print_json(&Value::Array(list));
    } else {
        outln!(
            "{:<10} {:<18} {:<44} {:<24} {:<36} {:<14} {:>8}  {}",
            "PROVIDER",
            "MODEL",
            "ANSWER",
            "STREAM",
            "TOKENS",
            "COST",
            "LATENCY",
            "HEALTH"
        );
        for r in &rows {
            outln!(
                "{:<10} {:<18} {:<44} {:<24} {:<36} {:<14} {:>6}ms  {}",
                r.provider,
                r.model,
                truncate(&r.answer, 44),
                r.streamed,
                r.tokens,
                r.cost,
                r.latency_ms,
                r.health
            );
        }
    }
    if failures > 0 {
        return Err(Fail(Error::Internal(format!(
            "{failures} provider(s) failed the demo"
        ))));
    }
    Ok(())
}
