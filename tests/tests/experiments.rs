//! A/B experiments of agents, end to end: calls through the host to the
//! simulator on loopback, usage in a real SQLite file, and the report
//! checked against figures recomputed here from the usage rows.

mod common;

use futures::StreamExt;
use llmhost::registry::rust_decimal::Decimal;
use llmhost::secrets::{EncryptionKey, Keyring};
use llmhost::store::UsageRecord;
use llmhost::types::ChatRequest;
use llmhost::{ConfigPrices, ConfigService, NewConfig, NewExperiment, Sticky, Store, Variant};
use llmhost_simulator::{Reply, Simulator, Vendor};
use secrecy::SecretString;
use std::collections::BTreeMap;

fn config(sim: &Simulator, vendor: Vendor, provider: &str, model: &str) -> NewConfig {
    let mut config = NewConfig::new(provider, model);
    config.api_key = Some(SecretString::from("sk-experiment-test".to_owned()));
    config.fields.base_url = Some(sim.base_url(vendor));
    config.fields.max_attempts = Some(1);
    config
}

fn variant(name: &str, weight: u32, provider: &str, model: &str) -> Variant {
    Variant {
        name: name.into(),
        weight,
        provider: provider.into(),
        model: model.into(),
        temperature: None,
        max_tokens: None,
        top_p: None,
    }
}

fn request(user: Option<&str>) -> ChatRequest {
    let mut request = ChatRequest::simple("ignored", "Which plan suits me?");
    request.user = user.map(str::to_owned);
    request
}

/// A service over a new SQLite file in `dir`, with a fresh keyring.
async fn service_in(dir: &std::path::Path) -> ConfigService {
    let store = Store::open(&dir.join("llmhost.db")).await.unwrap();
    ConfigService::new(
        common::host().await,
        store,
        Some(Keyring::new(EncryptionKey::generate())),
    )
}

/// Nearest-rank percentile, written here apart from the host's.
fn nearest_rank(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// A variant's figures recomputed from the usage rows.
#[derive(Debug, Default, PartialEq)]
struct Recomputed {
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Decimal,
    latencies: Vec<u64>,
}

/// Each call's last usage row, grouped by variant.
fn recompute(rows: &[UsageRecord], experiment: &str) -> BTreeMap<String, Recomputed> {
    let mut last: BTreeMap<String, &UsageRecord> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.served.experiment.as_deref() == Some(experiment))
    {
        let id = row.request_id.clone().expect("every row has a request id");
        let entry = last.entry(id).or_insert(row);
        if row.id > entry.id {
            *entry = row;
        }
    }
    let mut out: BTreeMap<String, Recomputed> = BTreeMap::new();
    for row in last.values() {
        let v = out
            .entry(row.served.variant.clone().expect("variant tagged"))
            .or_default();
        v.requests += 1;
        if row.status == "ok" {
            v.latencies.push(row.latency_ms);
        } else {
            v.errors += 1;
        }
        v.input_tokens += row.input_tokens;
        v.output_tokens += row.output_tokens;
        v.cost_usd += row.cost_usd.unwrap_or_default();
    }
    for v in out.values_mut() {
        v.latencies.sort_unstable();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_experiment_splits_by_weight_sticks_to_users_and_reports_what_the_rows_show() {
    let sim = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("llmhost.db");
    let store = Store::open(&db).await.unwrap();
    let keyring = Keyring::new(EncryptionKey::generate());
    let service = ConfigService::new(common::host().await, store, Some(keyring));

    service.create_agent("shop", None).await.unwrap();
    // Custom prices, $1 and $2 per million tokens, which the control
    // variant (the same model) is billed at.
    let mut openai = config(&sim, Vendor::OpenAi, "openai", "gpt-4o-mini");
    openai.fields.prices = Some(ConfigPrices::new(1_000_000, 2_000_000));
    service.create_config("shop", openai).await.unwrap();
    // Lends the treatment variant its key and base URL.
    let mut deepseek = config(&sim, Vendor::DeepSeek, "deepseek", "deepseek-chat");
    deepseek.fields.priority = 1;
    service.create_config("shop", deepseek).await.unwrap();

    let mut treatment = variant("treatment", 20, "deepseek", "deepseek-chat");
    treatment.temperature = Some(0.3);
    let created = service
        .create_experiment(NewExperiment {
            name: "pricing".into(),
            agent: "shop".into(),
            sticky: Sticky::User,
            variants: vec![variant("control", 80, "openai", "gpt-4o-mini"), treatment],
        })
        .await
        .unwrap();
    assert_eq!(created.variants.len(), 2);

    // The treatment's provider rejects its first 25 requests: 400 stops a
    // call at once (no retry, no fallback), so each is one failed call.
    for _ in 0..25 {
        sim.enqueue(
            Vendor::DeepSeek,
            Reply::deepseek_error(400, "invalid_request_error", "simulated rejection"),
        );
    }

    let users: Vec<String> = (0..1000).map(|i| format!("customer-{i}")).collect();
    let first: Vec<(String, Option<String>)> = futures::stream::iter(users.iter())
        .map(|user| {
            let service = &service;
            async move {
                let variant = match service.chat("shop", request(Some(user))).await {
                    Ok(answer) => Some(answer.experiment.expect("tagged").1),
                    Err(_) => None,
                };
                (user.clone(), variant)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    service.flush_usage().await.unwrap();
    assert_eq!(sim.pending(Vendor::DeepSeek), 0, "all rejections were used");

    let report = service.experiment_report("pricing").await.unwrap();
    let control = &report.variants[0];
    let treated = &report.variants[1];
    assert_eq!(control.requests + treated.requests, 1000);
    // 1,000 distinct users hashed by blake3: the split is deterministic.
    // Were it a fair draw, a Binomial(1000, 0.2) count falls outside
    // [138, 262] with probability 9.99e-7 (exact tail sum), so this bound
    // fails falsely less than once in a million.
    assert!(
        (138..=262).contains(&treated.requests),
        "treatment got {} of 1000",
        treated.requests
    );
    assert_eq!(treated.errors, 25);
    assert_eq!(control.errors, 0);

    // The treatment's requests went to DeepSeek with its temperature.
    let deepseek_bodies: Vec<serde_json::Value> = sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/deepseek"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(deepseek_bodies.len() as u64, treated.requests);
    assert!(deepseek_bodies.iter().all(|b| b["temperature"] == 0.3));

    // Sticky: the same user gets the same variant on every call.
    let by_user: BTreeMap<&str, &Option<String>> =
        first.iter().map(|(u, v)| (u.as_str(), v)).collect();
    for user in users.iter().step_by(10) {
        let again = service.chat("shop", request(Some(user))).await.unwrap();
        let variant = again.experiment.unwrap().1;
        if let Some(before) = by_user[user.as_str()] {
            assert_eq!(&variant, before, "{user} changed variant");
        } else {
            // Its first call was rejected, which only the treatment's were.
            assert_eq!(variant, "treatment", "{user} changed variant");
        }
    }
    service.flush_usage().await.unwrap();

    // The report equals what the usage rows show, recomputed here.
    let report = service.experiment_report("pricing").await.unwrap();
    let rows = service.store().usage_events(Some("shop")).await.unwrap();
    let recomputed = recompute(&rows, "pricing");
    assert_eq!(recomputed.values().map(|v| v.requests).sum::<u64>(), 1100);
    for v in &report.variants {
        let r = &recomputed[&v.name];
        assert_eq!(v.requests, r.requests, "{}", v.name);
        assert_eq!(v.errors, r.errors, "{}", v.name);
        assert_eq!(v.input_tokens, r.input_tokens, "{}", v.name);
        assert_eq!(v.output_tokens, r.output_tokens, "{}", v.name);
        assert_eq!(v.cost_usd, r.cost_usd, "{}", v.name);
        assert!(r.cost_usd > Decimal::ZERO);
        assert_eq!(v.unpriced, 0);
        assert_eq!(
            v.mean_cost_usd,
            Some(r.cost_usd / Decimal::from(r.requests)),
            "{}",
            v.name
        );
        assert_eq!(v.latency_p50_ms, nearest_rank(&r.latencies, 50));
        assert_eq!(v.latency_p99_ms, nearest_rank(&r.latencies, 99));
    }
    let control_rows = &recomputed["control"];
    assert_eq!(
        control_rows.cost_usd,
        Decimal::from(control_rows.input_tokens + 2 * control_rows.output_tokens)
            / Decimal::from(1_000_000),
        "the control is billed at the lending config's prices"
    );
    let comparison = report.variants[1].versus_control.unwrap();
    let cost = comparison.mean_cost_usd.unwrap();
    let mean = |v: &Recomputed| {
        use llmhost::registry::rust_decimal::prelude::ToPrimitive;
        (v.cost_usd / Decimal::from(v.requests)).to_f64().unwrap()
    };
    let expected = mean(&recomputed["treatment"]) - mean(&recomputed["control"]);
    assert!((cost.difference - expected).abs() < 1e-12, "{cost:?}");
    assert!(cost.low < cost.difference && cost.difference < cost.high);
    let latency = comparison.mean_latency_ms.unwrap();
    assert!(latency.low <= latency.difference && latency.difference <= latency.high);
    assert!(report.variants[0].versus_control.is_none());

    // Stopped, the experiment no longer splits: every call goes to the
    // agent's first config, untagged; the report stays as it was.
    let stopped = service.stop_experiment("pricing").await.unwrap();
    assert!(stopped.stopped_at.is_some());
    let before = sim.requests().len();
    for user in users.iter().take(50) {
        let answer = service.chat("shop", request(Some(user))).await.unwrap();
        assert_eq!(answer.experiment, None);
        assert_eq!(answer.provider, "openai");
    }
    service.flush_usage().await.unwrap();
    assert!(
        sim.requests()[before..]
            .iter()
            .all(|r| r.path.starts_with("/openai"))
    );
    let after = service.experiment_report("pricing").await.unwrap();
    assert_eq!(after.variants, report.variants);
    let err = service.stop_experiment("pricing").await.unwrap_err();
    assert_eq!(err.kind(), llmhost::ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_without_a_user_and_per_request_experiments_spread_by_weight() {
    let sim = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = service_in(dir.path()).await;
    service.create_agent("desk", None).await.unwrap();
    service
        .create_config(
            "desk",
            config(&sim, Vendor::OpenAi, "openai", "gpt-4o-mini"),
        )
        .await
        .unwrap();
    service
        .create_experiment(NewExperiment {
            name: "models".into(),
            agent: "desk".into(),
            sticky: Sticky::Request,
            variants: vec![
                variant("mini", 80, "openai", "gpt-4o-mini"),
                variant("full", 20, "openai", "gpt-4o"),
            ],
        })
        .await
        .unwrap();
    // A per-request experiment draws anew for each call, so one user is
    // spread too. Random: Binomial(1000, 0.2) leaves [138, 262] with
    // probability 9.99e-7.
    let full = futures::stream::iter(0..1000)
        .map(|_| {
            let service = &service;
            async move {
                let answer = service.chat("desk", request(Some("same-user"))).await;
                let answer = answer.unwrap();
                assert_eq!(
                    answer.model,
                    answer.experiment.as_ref().map_or("", |e| {
                        if e.1 == "full" {
                            "gpt-4o"
                        } else {
                            "gpt-4o-mini"
                        }
                    })
                );
                u32::from(answer.experiment.unwrap().1 == "full")
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<u32>>()
        .await
        .iter()
        .sum::<u32>();
    assert!((138..=262).contains(&full), "full got {full} of 1000");
    service.flush_usage().await.unwrap();
    let report = service.experiment_report("models").await.unwrap();
    assert_eq!(u64::from(full), report.variants[1].requests);
    assert_eq!(report.variants[0].requests, 1000 - u64::from(full));

    // A second active experiment of the same agent is refused.
    let err = service
        .create_experiment(NewExperiment {
            name: "other".into(),
            agent: "desk".into(),
            sticky: Sticky::User,
            variants: vec![
                variant("a", 1, "openai", "gpt-4o-mini"),
                variant("b", 1, "openai", "gpt-4o"),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), llmhost::ErrorKind::Conflict);
    // A variant is checked as a config is.
    let err = service
        .create_experiment(NewExperiment {
            name: "bad".into(),
            agent: "desk".into(),
            sticky: Sticky::User,
            variants: vec![
                variant("a", 1, "openai", "gpt-4o-mini"),
                variant("b", 0, "openai", "gpt-4o"),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), llmhost::ErrorKind::Validation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_the_response_cache_are_counted_apart_in_the_report() {
    let sim = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = service_in(dir.path()).await;
    service.create_agent("faq", None).await.unwrap();
    service
        .create_config("faq", config(&sim, Vendor::OpenAi, "openai", "gpt-4o-mini"))
        .await
        .unwrap();
    // Sampled requests are cached too: the variants set no temperature.
    service
        .set_agent_cache("faq", Some((std::time::Duration::from_secs(600), true)))
        .await
        .unwrap();
    service
        .create_experiment(NewExperiment {
            name: "cached".into(),
            agent: "faq".into(),
            sticky: Sticky::User,
            variants: vec![
                variant("a", 50, "openai", "gpt-4o-mini"),
                variant("b", 50, "openai", "gpt-4o"),
            ],
        })
        .await
        .unwrap();
    // One user asks the same question three times: one provider call and
    // two cache hits, all of the user's variant.
    let mut assigned = Vec::new();
    for _ in 0..3 {
        let answer = service
            .chat("faq", request(Some("reader-7")))
            .await
            .unwrap();
        assigned.push(answer.experiment.unwrap().1);
    }
    assigned.dedup();
    assert_eq!(assigned.len(), 1, "sticky: {assigned:?}");
    assert_eq!(
        sim.requests().len(),
        1,
        "the repeats were served from the cache"
    );
    service.flush_usage().await.unwrap();

    let report = service.experiment_report("cached").await.unwrap();
    let served = report
        .variants
        .iter()
        .find(|v| v.name == assigned[0])
        .unwrap();
    assert_eq!((served.requests, served.cache_hits), (1, 2));
    assert!(served.cost_usd > Decimal::ZERO);
    // The one provider call is the only latency sample: the hits' near-zero
    // latencies and costs would otherwise flatter the variant.
    assert_eq!(served.mean_cost_usd, Some(served.cost_usd));
    let other = report
        .variants
        .iter()
        .find(|v| v.name != assigned[0])
        .unwrap();
    assert_eq!((other.requests, other.cache_hits), (0, 0));
}
