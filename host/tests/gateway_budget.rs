//! Budgets at the gateway: concurrent requests against a virtual key whose
//! budget covers ten of them. Each request reserves its worst case before
//! it is sent, so the key never spends past its budget however many run
//! at once; the refused ones get `budget_exceeded` with
//! `x-should-retry: false`, and the usage rows add up to the spend the
//! budget report gives.

use llmhost::gateway::{Gateway, GatewayOptions};
use llmhost::registry::rust_decimal::Decimal;
use llmhost::router::StoreSink;
use llmhost::secrets::{EncryptionKey, Keyring};
use llmhost::{
    BudgetPeriod, Budgets, ConfigService, Host, NewVirtualKey, Store, VirtualKey, VirtualKeys,
};
use llmhost_simulator::{Simulator, Vendor};
use serde_json::{Value, json};
use std::time::SystemTime;

const REQUESTS: usize = 50;
const COVERED: u32 = 10;

/// A host pointed at `sim` through the provider's environment variables
/// (as in production), its store, and virtual keys on it; then the gateway
/// over them on a free loopback port.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    host: Host,
    keyring: Keyring,
}

/// A gateway serving on a task until `stop`.
struct Served {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), llmhost::Error>>,
}

impl Fixture {
    async fn new(sim: &Simulator) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("gateway.db")).await.unwrap();
        let base = sim.base_url(Vendor::OpenAi);
        let host = Host::builder()
            .ignore_plugin_env()
            .environment(move |name| match name {
                "OPENAI_API_KEY" => Some("sk-budget".to_owned()),
                "OPENAI_BASE_URL" => Some(base.clone()),
                _ => None,
            })
            .usage_sink(StoreSink::new(store.clone()))
            .build()
            .await
            .unwrap();
        Self {
            _dir: dir,
            store,
            host,
            keyring: Keyring::new(EncryptionKey::generate()),
        }
    }

    fn keys(&self) -> VirtualKeys {
        VirtualKeys::new(self.store.clone(), Some(&self.keyring))
    }

    /// A key named `name` with `budget`, and its secret.
    async fn key(&self, name: &str, budget: (Decimal, BudgetPeriod)) -> (VirtualKey, String) {
        let mut new = NewVirtualKey::new(name);
        new.budget = Some(budget);
        let (key, secret) = self.keys().create(new).await.unwrap();
        (
            key,
            secrecy::ExposeSecret::expose_secret(&secret).to_owned(),
        )
    }

    async fn serve(&self) -> Served {
        let service = ConfigService::new(
            self.host.clone(),
            self.store.clone(),
            Some(self.keyring.clone()),
        )
        .with_router(self.host.router());
        let options = GatewayOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..GatewayOptions::default()
        };
        let gateway = Gateway::new(service, Some(self.keys()), options)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(gateway.serve(listener, async move {
            let _ = stopped.await;
        }));
        Served { addr, stop, server }
    }
}

impl Served {
    /// Shuts the gateway down; its usage rows are flushed.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_cannot_overspend_a_budget() {
    let sim = Simulator::start().await.unwrap();
    let f = Fixture::new(&sim).await;

    // What one answer costs: the simulator's usage for this prompt, at the
    // catalogue's price.
    let body = json!({
        "model": "openai/gpt-4o-mini",
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "hello"}],
    });
    let probe = f
        .host
        .chat(
            &llmhost::Target::new("openai"),
            &llmhost::types::ChatRequest::simple("gpt-4o-mini", "hello"),
        )
        .await
        .unwrap();
    let one = probe.cost_usd.expect("priced");
    let budget = one * Decimal::from(COVERED);

    let (key, secret) = f.key("budgeted", (budget, BudgetPeriod::Month)).await;
    let served = f.serve().await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/chat/completions", served.addr);

    let calls = (0..REQUESTS).map(|_| {
        let client = client.clone();
        let url = url.clone();
        let body = body.clone();
        let secret = secret.clone();
        async move {
            let response = client
                .post(&url)
                .bearer_auth(&secret)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("x-should-retry")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, retry, body)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|(status, ..)| *status == 200).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    assert_eq!(ok + refused.len(), REQUESTS, "{answers:?}");
    eprintln!("{ok} of {REQUESTS} answered");
    assert!(
        (1..=COVERED as usize).contains(&ok),
        "{ok} answered for a budget of {COVERED}"
    );
    for (_, retry, body) in &refused {
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
        assert_eq!(retry.as_deref(), Some("false"));
    }

    served.stop().await;
    // The usage rows of the key add up to what its budget report says,
    // and stay within the budget.
    let rows = f.store.usage_events(None).await.unwrap();
    let keyed: Vec<_> = rows
        .iter()
        .filter(|r| r.virtual_key_id == Some(key.id))
        .collect();
    assert_eq!(keyed.len(), ok);
    let spent: Decimal = keyed.iter().filter_map(|r| r.cost_usd).sum();
    assert!(spent <= budget, "spent {spent} of {budget}");
    let report = Budgets::new(f.store.clone())
        .of_virtual_key(&key, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(report.spent.cost_usd, spent);
    assert_eq!(spent, one * Decimal::from(ok as u32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_the_client_leaves_is_charged_its_estimate() {
    let sim = Simulator::start().await.unwrap();
    sim.set_stream_delay(std::time::Duration::from_millis(200));
    let f = Fixture::new(&sim).await;
    let (key, secret) = f.key("leaver", (Decimal::from(1), BudgetPeriod::Day)).await;
    let served = f.serve().await;

    let long = "a fairly long prompt that the simulator echoes back word by word ".repeat(4);
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", served.addr))
        .bearer_auth(&secret)
        .body(
            json!({
                "model": "openai/gpt-4o-mini",
                "max_tokens": 100,
                "stream": true,
                "messages": [{"role": "user", "content": long}],
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    use futures::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // The client leaves mid-stream.
    drop(body);

    // The gateway notices at its next frame; the row is then written.
    let since = std::time::Instant::now();
    let row = loop {
        f.host.router().flush_usage().await.unwrap();
        let rows = f.store.usage_events(None).await.unwrap();
        if let Some(row) = rows.into_iter().find(|r| r.virtual_key_id == Some(key.id)) {
            break row;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(20),
            "no row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(row.error_kind.as_deref(), Some("cancelled"), "{row:?}");
    assert!(row.estimated && row.input_tokens > 0, "{row:?}");
    let cost = row.cost_usd.expect("an estimate is priced");
    assert!(cost > Decimal::ZERO);

    served.stop().await;
    let report = Budgets::new(f.store.clone())
        .of_virtual_key(&key, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        report.spent.cost_usd, cost,
        "the budget counts what the row says"
    );
}
