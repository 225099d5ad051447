//! Memory for many simultaneous streams: `BENCH_STREAMS` (default 1000)
//! streamed answers held open at once through the host, each with its own
//! plugin instance, against the vendor simulator; and, for comparison, the
//! same number of streams read with reqwest.
//!
//! Each side runs in its own child process so that each peak RSS (`VmHWM`)
//! is that side's alone; the simulator runs in a third. Every stream reads
//! its first chunk, then waits until all of them have, so all are open at
//! the same moment; then each reads to the end.
//!
//! Run: `cargo bench -p llmhost --bench streams`.

#[path = "support/mod.rs"]
mod support;

use futures::StreamExt;
use llmhost::types::Chunk;
use llmhost::{Host, Limits, Target};
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{SimulatorProcess, env_number, mib, proc_status_bytes};
use tokio::sync::Barrier;

const ROLE: &str = "BENCH_STREAMS_ROLE";
const BASE_URL: &str = "BENCH_STREAMS_BASE_URL";
const MODEL: &str = "gpt-4o-mini";
const PROMPT: &str = "Tell me about streams in a few words.";

/// What one side measured, printed by the child as one line.
struct Report {
    baseline: u64,
    all_open: u64,
    peak: u64,
    elapsed: Duration,
}

impl Report {
    fn print(&self) {
        println!(
            "report {} {} {} {}",
            self.baseline,
            self.all_open,
            self.peak,
            self.elapsed.as_micros()
        );
    }

    fn parse(output: &str) -> Report {
        let line = output
            .lines()
            .find_map(|line| line.strip_prefix("report "))
            .unwrap_or_else(|| panic!("no report in child output: {output}"));
        let fields: Vec<u64> = line
            .split(' ')
            .map(|n| n.parse().expect("report field"))
            .collect();
        Report {
            baseline: fields[0],
            all_open: fields[1],
            peak: fields[2],
            elapsed: Duration::from_micros(fields[3]),
        }
    }
}

async fn host_side(base_url: String, streams: usize) -> Report {
    let cache = tempfile::tempdir().expect("cache dir");
    let host = Host::builder()
        .ignore_plugin_env()
        .cache_dir(Some(cache.path().to_path_buf()))
        .limits(Limits {
            max_concurrent_instances: u32::try_from(streams).expect("streams"),
            ..Limits::default()
        })
        .build()
        .await
        .expect("host");
    let mut target = Target::new("openai").base_url(base_url).api_key("sk-bench");
    target.use_env = false;
    let request = support::request(MODEL, PROMPT);
    // One stream first, so the baseline includes what any first request
    // loads (tokenizer tables, connection pool, code pages).
    host.stream(&target, &request)
        .await
        .expect("stream")
        .collect()
        .await
        .expect("collect");
    let baseline = proc_status_bytes("VmRSS");

    let (host, target, request) = (Arc::new(host), Arc::new(target), Arc::new(request));
    hold_open(streams, baseline, move |all_open| {
        let (host, target, request) = (host.clone(), target.clone(), request.clone());
        async move {
            let mut stream = host.stream(&target, &request).await.expect("stream");
            let first = stream.next().await.expect("first chunk").expect("chunk");
            let rss = all_open.wait().await;
            let mut text = matches!(first, Chunk::Text(_)) as usize;
            while let Some(chunk) = stream.next().await {
                text += matches!(chunk.expect("chunk"), Chunk::Text(_)) as usize;
            }
            assert!(text > 0, "no text streamed");
            rss
        }
    })
    .await
}

async fn native_side(base_url: String, streams: usize) -> Report {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .expect("reqwest");
    let url = format!("{base_url}/chat/completions");
    let body = bytes::Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": PROMPT},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .expect("json"),
    );
    let open = |client: reqwest::Client, url: String, body: bytes::Bytes| async move {
        let response = client
            .post(url)
            .header("authorization", "Bearer sk-bench")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert!(response.status().is_success());
        response.bytes_stream()
    };
    // Read an SSE body to the end, parsing each event's JSON.
    async fn drain(
        mut body: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
        mut buffer: Vec<u8>,
    ) -> usize {
        let mut events = 0;
        loop {
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                let event = std::str::from_utf8(&event).expect("utf-8");
                if let Some(data) = event.trim().strip_prefix("data: ") {
                    if data != "[DONE]" {
                        let _: serde_json::Value = serde_json::from_str(data).expect("json");
                    }
                    events += 1;
                }
            }
            match body.next().await {
                Some(piece) => buffer.extend_from_slice(&piece.expect("body")),
                None => return events,
            }
        }
    }
    drain(
        open(client.clone(), url.clone(), body.clone()).await,
        Vec::new(),
    )
    .await;
    let baseline = proc_status_bytes("VmRSS");

    hold_open(streams, baseline, move |all_open| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let mut stream = open(client, url, body).await;
            let first = stream.next().await.expect("first piece").expect("body");
            let rss = all_open.wait().await;
            assert!(drain(stream, first.to_vec()).await > 0);
            rss
        }
    })
    .await
}

/// The moment every stream is open: each task waits here after its first
/// chunk; the last to arrive reads the RSS.
struct AllOpen(Arc<Barrier>);

impl AllOpen {
    async fn wait(&self) -> Option<u64> {
        self.0
            .wait()
            .await
            .is_leader()
            .then(|| proc_status_bytes("VmRSS"))
    }
}

/// Runs `streams` copies of `one_stream` at once (each opens a stream,
/// reads a first chunk, waits on [`AllOpen`], then reads to the end) and
/// reports the memory they took.
async fn hold_open<F, Fut>(streams: usize, baseline: u64, one_stream: F) -> Report
where
    F: Fn(AllOpen) -> Fut,
    Fut: Future<Output = Option<u64>> + Send + 'static,
{
    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(streams));
    let tasks: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(one_stream(AllOpen(Arc::clone(&barrier)))))
        .collect();
    let mut all_open = 0;
    for task in tasks {
        if let Some(rss) = task.await.expect("stream task") {
            all_open = rss;
        }
    }
    Report {
        baseline,
        all_open,
        peak: proc_status_bytes("VmHWM"),
        elapsed: started.elapsed(),
    }
}

fn child(role: &str) {
    let base_url = std::env::var(BASE_URL).expect(BASE_URL);
    let streams = env_number("BENCH_STREAMS", 1000);
    let runtime = support::runtime();
    let report = match role {
        "host" => runtime.block_on(host_side(base_url, streams)),
        "native" => runtime.block_on(native_side(base_url, streams)),
        other => panic!("unknown {ROLE} {other:?}"),
    };
    report.print();
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role);
    }
    support::raise_open_file_limit();
    let streams = env_number("BENCH_STREAMS", 1000);
    let simulator = SimulatorProcess::start();
    let run = |role: &str| {
        let output = Command::new(std::env::current_exe().expect("current exe"))
            .env(ROLE, role)
            .env(BASE_URL, simulator.base_url("openai/v1"))
            .env("BENCH_STREAMS", streams.to_string())
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{role} side failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        Report::parse(&stdout)
    };
    let native = run("native");
    let host = run("host");

    println!("streams: {streams} simultaneous streams, each side in its own process");
    println!();
    println!(
        "| side | RSS before | RSS with all open | peak RSS (VmHWM) | peak − before | per stream | wall time |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, report) in [("reqwest", &native), ("host (openai component)", &host)] {
        let added = report.peak.saturating_sub(report.baseline);
        println!(
            "| {name} | {} | {} | {} | {} | {:.1} KiB | {:.0} ms |",
            mib(report.baseline),
            mib(report.all_open),
            mib(report.peak),
            mib(added),
            added as f64 / 1024.0 / streams as f64,
            report.elapsed.as_secs_f64() * 1e3,
        );
    }
    drop(simulator);
}
