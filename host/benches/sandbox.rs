//! What the WebAssembly boundary costs, provider by provider, measured
//! side by side with the same work done natively in Rust.
//!
//! - `chat/<provider>/{native,wasm}`: one chat completion against an
//!   in-process HTTP server that answers with a canned vendor response,
//!   over a pooled keep-alive connection. `wasm` is `Host::chat_once`
//!   (one attempt, no router): a fresh store and instance, the guest
//!   builds the JSON, sends it through the HTTP gate, parses the answer,
//!   and the instance is dropped. `native`
//!   builds the same body with serde_json, sends it with hyper and parses
//!   the answer into a `serde_json::Value`.
//! - `stream/<provider>/{native,wasm}`: a 500-event streamed answer, read
//!   to the end (`wasm` through `ChatStream::next`, `native` by splitting
//!   the SSE body and parsing each event's JSON).
//! - `call/no_io`: `Host::count_tokens` on a short text: a fresh instance,
//!   one call into the guest, one back into the host tokenizer, the drop.
//! - `load/<provider>/{compile,cached}`: one component loaded as the plugin
//!   directory loads it (compile or cache read, contract check, `info()`).
//! - `chat/openai-v01/wasm`, `stream/openai-v01/wasm`: the same OpenAI
//!   calls through the contract 0.1 test fixture (the OpenAI provider as
//!   written for 0.1, doing its own HTTP over `wasi:http`), for before and
//!   after in one run. Present when the fixture is built
//!   (`cargo test -p llmhost-tests --no-run` builds it).
//!
//! Run: `cargo bench -p llmhost --bench sandbox` (add
//! `BENCH_CURRENT_THREAD=1` for a single-threaded runtime). `scripts/bench`
//! runs it with shorter measurement times.

#[path = "support/mod.rs"]
mod support;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llmhost::types::{ChatRequest, Chunk, Role, TokenInput};
use llmhost::{Host, Target};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Events in every streamed answer.
const STREAM_EVENTS: usize = 500;

/// The wire dialect a provider speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

struct Case {
    provider: &'static str,
    model: &'static str,
    /// Appended to the server's address to make the provider's base URL.
    base_path: &'static str,
    /// Appended to the base URL to make the chat endpoint.
    endpoint: &'static str,
    dialect: Dialect,
}

const CASES: &[Case] = &[
    Case {
        provider: "openai",
        model: "gpt-4o-mini",
        base_path: "/v1",
        endpoint: "/chat/completions",
        dialect: Dialect::OpenAi,
    },
    Case {
        provider: "deepseek",
        model: "deepseek-chat",
        base_path: "",
        endpoint: "/chat/completions",
        dialect: Dialect::OpenAi,
    },
    Case {
        provider: "grok",
        model: "grok-3",
        base_path: "/v1",
        endpoint: "/chat/completions",
        dialect: Dialect::OpenAi,
    },
    Case {
        provider: "claude",
        model: "claude-sonnet-4-5",
        base_path: "",
        endpoint: "/v1/messages",
        dialect: Dialect::Anthropic,
    },
];

/// The OpenAI provider under contract 0.1 (a test fixture), measured
/// beside the 0.2 built-ins.
const V0_1_CASE: Case = Case {
    provider: "openai-v01",
    model: "gpt-4o-mini",
    base_path: "/v1",
    endpoint: "/chat/completions",
    dialect: Dialect::OpenAi,
};

const OPENAI_COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":9,"total_tokens":28},"system_fingerprint":"fp_bench"}"#;

const ANTHROPIC_MESSAGE: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":19,"output_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#;

/// An OpenAI-style stream of exactly `STREAM_EVENTS` data events: the role,
/// one word per event, the finish reason, the usage chunk, `[DONE]`.
fn openai_stream() -> Bytes {
    let words = STREAM_EVENTS - 4;
    let chunk = |delta: Value, finish: Value, usage: Value| {
        let event = json!({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk",
            "created": 1700000000, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_bench",
            "choices": if usage.is_null() {
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
            } else {
                json!([])
            },
            "usage": usage,
        });
        format!("data: {event}\n\n")
    };
    let mut body = chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        Value::Null,
    );
    for i in 0..words {
        body.push_str(&chunk(
            json!({"content": format!(" word{i}")}),
            Value::Null,
            Value::Null,
        ));
    }
    body.push_str(&chunk(json!({}), json!("stop"), Value::Null));
    body.push_str(&chunk(
        json!({}),
        Value::Null,
        json!({"prompt_tokens": 19, "completion_tokens": words, "total_tokens": 19 + words}),
    ));
    body.push_str("data: [DONE]\n\n");
    Bytes::from(body)
}

/// An Anthropic stream of exactly `STREAM_EVENTS` events.
fn anthropic_stream() -> Bytes {
    let words = STREAM_EVENTS - 5;
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut body = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 19, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    );
    body.push_str(&event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}}),
    ));
    for i in 0..words {
        body.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": format!(" word{i}")}}),
        ));
    }
    body.push_str(&event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    body.push_str(&event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": words}}),
    ));
    body.push_str(&event("message_stop", json!({"type": "message_stop"})));
    Bytes::from(body)
}

struct Canned {
    openai_stream: Bytes,
    anthropic_stream: Bytes,
}

/// An HTTP/1.1 server answering every chat request with a canned vendor
/// response: by path for the dialect, by `"stream":true` for streaming.
async fn canned_server() -> SocketAddr {
    let canned = Arc::new(Canned {
        openai_stream: openai_stream(),
        anthropic_stream: anthropic_stream(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let canned = Arc::clone(&canned);
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let canned = Arc::clone(&canned);
                    async move {
                        let anthropic = request.uri().path().ends_with("/messages");
                        let body = request.into_body().collect().await.map(|b| b.to_bytes());
                        let streaming =
                            body.is_ok_and(|b| b.windows(13).any(|w| w == b"\"stream\":true"));
                        let (content_type, body) = match (anthropic, streaming) {
                            (false, false) => (
                                "application/json",
                                Bytes::from_static(OPENAI_COMPLETION.as_bytes()),
                            ),
                            (true, false) => (
                                "application/json",
                                Bytes::from_static(ANTHROPIC_MESSAGE.as_bytes()),
                            ),
                            (false, true) => ("text/event-stream", canned.openai_stream.clone()),
                            (true, true) => ("text/event-stream", canned.anthropic_stream.clone()),
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", content_type)
                                .body(Full::new(body))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn request(model: &str) -> ChatRequest {
    let mut request = support::request(model, "Hello!");
    request.max_tokens = Some(1024);
    request
}

/// The request in the vendor's wire format, built natively.
fn native_body(dialect: Dialect, request: &ChatRequest, stream: bool) -> Vec<u8> {
    let role = |role: &Role| match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let body = match dialect {
        Dialect::OpenAi => {
            let messages: Vec<Value> = request
                .messages
                .iter()
                .map(|m| json!({"role": role(&m.role), "content": m.text_content()}))
                .collect();
            let mut body = json!({"model": request.model, "messages": messages,
                                  "max_completion_tokens": request.max_tokens});
            if stream {
                body["stream"] = json!(true);
                body["stream_options"] = json!({"include_usage": true});
            }
            body
        }
        Dialect::Anthropic => {
            let system: Vec<String> = request
                .messages
                .iter()
                .filter(|m| m.role == Role::System)
                .map(|m| m.text_content())
                .collect();
            let messages: Vec<Value> = request
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| json!({"role": role(&m.role), "content": [{"type": "text", "text": m.text_content()}]}))
                .collect();
            let mut body = json!({"model": request.model, "system": system.join("\n"),
                                  "messages": messages, "max_tokens": request.max_tokens});
            if stream {
                body["stream"] = json!(true);
            }
            body
        }
    };
    serde_json::to_vec(&body).expect("json")
}

struct Native {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Native {
    fn post(&self, case: &Case, body: Vec<u8>) -> hyper::Request<Full<Bytes>> {
        let uri = format!("http://{}{}{}", self.addr, case.base_path, case.endpoint);
        let builder = hyper::Request::post(uri).header("content-type", "application/json");
        let builder = match case.dialect {
            Dialect::OpenAi => builder.header("authorization", "Bearer sk-bench"),
            Dialect::Anthropic => builder
                .header("x-api-key", "sk-bench")
                .header("anthropic-version", "2023-06-01"),
        };
        builder.body(Full::new(Bytes::from(body))).expect("request")
    }

    /// Sends the request in the vendor's wire format; returns the body of
    /// a successful answer.
    async fn send(&self, case: &Case, request: &ChatRequest, stream: bool) -> Incoming {
        let body = native_body(case.dialect, request, stream);
        let response = self
            .client
            .request(self.post(case, body))
            .await
            .expect("response");
        assert!(response.status().is_success());
        response.into_body()
    }

    async fn chat(&self, case: &Case, request: &ChatRequest) -> u64 {
        let bytes = self
            .send(case, request, false)
            .await
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).expect("json");
        let usage = &value["usage"];
        usage["prompt_tokens"]
            .as_u64()
            .or_else(|| usage["input_tokens"].as_u64())
            .expect("usage")
    }

    /// Reads a streamed answer as a native client would: frame by frame,
    /// splitting SSE events and parsing each one's JSON.
    async fn stream(&self, case: &Case, request: &ChatRequest) -> (usize, String) {
        let mut body = self.send(case, request, true).await;
        let mut buffer: Vec<u8> = Vec::new();
        let mut text = String::new();
        let mut events = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("frame");
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buffer.extend_from_slice(data);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                let event = std::str::from_utf8(&event).expect("utf-8");
                for line in event.lines() {
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    events += 1;
                    if data == "[DONE]" {
                        continue;
                    }
                    let value: Value = serde_json::from_str(data).expect("event json");
                    let delta = match case.dialect {
                        Dialect::OpenAi => &value["choices"][0]["delta"]["content"],
                        Dialect::Anthropic => &value["delta"]["text"],
                    };
                    if let Some(piece) = delta.as_str() {
                        text.push_str(piece);
                    }
                }
            }
        }
        (events, text)
    }
}

fn target(case: &Case, addr: SocketAddr) -> Target {
    let mut target = Target::new(case.provider)
        .base_url(format!("http://{addr}{}", case.base_path))
        .api_key("sk-bench");
    target.use_env = false;
    target
}

/// Reads a streamed answer through the host to the end.
async fn host_stream(host: &Host, target: &Target, request: &ChatRequest) -> (usize, String) {
    let mut stream = host.stream_once(target, request).await.expect("stream");
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        chunks += 1;
        if let Chunk::Text(piece) = chunk.expect("chunk") {
            text.push_str(&piece);
        }
    }
    (chunks, text)
}

fn bench(c: &mut Criterion) {
    let runtime = support::runtime();
    let addr = runtime.block_on(canned_server());
    let cache = tempfile::tempdir().expect("cache dir");
    let fixture = support::v0_1_fixture_dir(&runtime);
    let plugins = match &fixture {
        Some(dir) => dir.path().to_path_buf(),
        None => {
            let empty = cache.path().join("no-plugins");
            std::fs::create_dir_all(&empty).expect("plugin dir");
            empty
        }
    };
    let host = runtime
        .block_on(
            Host::builder()
                .ignore_plugin_env()
                .plugin_dir(&plugins)
                .cache_dir(Some(cache.path().to_path_buf()))
                .build(),
        )
        .expect("host");
    let cases: Vec<&Case> = CASES
        .iter()
        .chain(fixture.as_ref().map(|_| &V0_1_CASE))
        .collect();
    let native = Native {
        client: Client::builder(TokioExecutor::new()).build_http(),
        addr,
    };

    // Both sides must do the same work before either is timed.
    for &case in &cases {
        let req = request(case.model);
        let target = target(case, addr);
        let (native_events, native_text) = runtime.block_on(native.stream(case, &req));
        let (_, host_text) = runtime.block_on(host_stream(&host, &target, &req));
        assert_eq!(native_events, STREAM_EVENTS, "{}", case.provider);
        assert_eq!(native_text, host_text, "{}", case.provider);
    }

    let mut group = c.benchmark_group("chat");
    for &case in &cases {
        let req = request(case.model);
        let target = target(case, addr);
        group.bench_function(BenchmarkId::new(case.provider, "native"), |b| {
            b.to_async(&runtime).iter(|| async {
                assert_eq!(native.chat(case, &req).await, 19);
            })
        });
        group.bench_function(BenchmarkId::new(case.provider, "wasm"), |b| {
            b.to_async(&runtime).iter(|| async {
                let outcome = host.chat_once(&target, &req).await.expect("chat");
                assert_eq!(outcome.response.usage.input_tokens, 19);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("stream");
    for &case in &cases {
        let req = request(case.model);
        let target = target(case, addr);
        group.bench_function(BenchmarkId::new(case.provider, "native"), |b| {
            b.to_async(&runtime).iter(|| async {
                let (events, _) = native.stream(case, &req).await;
                assert_eq!(events, STREAM_EVENTS);
            })
        });
        group.bench_function(BenchmarkId::new(case.provider, "wasm"), |b| {
            b.to_async(&runtime).iter(|| async {
                let (chunks, _) = host_stream(&host, &target, &req).await;
                assert!(chunks > STREAM_EVENTS - 10);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("call");
    let openai = target(&CASES[0], addr);
    group.bench_function("no_io", |b| {
        b.to_async(&runtime).iter(|| async {
            let count = host
                .count_tokens(&openai, "gpt-4o-mini", &TokenInput::Text("Hello!".into()))
                .await
                .expect("count");
            assert_eq!(count.tokens, 2);
        })
    });
    group.finish();

    bench_load(c, &runtime);
}

/// Component files to load: the built-in providers, plus the Python
/// provider when `providers/python-selfhosted/build.sh` has built it.
fn components(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for id in llmhost::builtin_provider_ids() {
        let path = dir.join(format!("{id}.wasm"));
        std::fs::write(&path, llmhost::builtin_component(id).expect("built in")).expect("write");
        files.push((id.to_owned(), path));
    }
    let python =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-plugins/selfhosted.wasm");
    if python.exists() {
        files.push(("selfhosted-python".to_owned(), python));
    }
    files
}

fn bench_load(c: &mut Criterion, runtime: &Runtime) {
    let files = tempfile::tempdir().expect("dir");
    let components = components(files.path());
    let cache = tempfile::tempdir().expect("cache dir");
    let build = |cache_dir: Option<PathBuf>| {
        runtime
            .block_on(
                Host::builder()
                    .ignore_plugin_env()
                    .without_builtins()
                    .cache_dir(cache_dir)
                    .build(),
            )
            .expect("host")
    };
    let compiling = build(None);
    let cached = build(Some(cache.path().to_path_buf()));

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for (id, path) in &components {
        let time = |host: &Host| {
            let host = host.clone();
            let path = path.clone();
            move |iters: u64| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    runtime.block_on(host.inspect(&path)).expect("load");
                    total += started.elapsed();
                }
                total
            }
        };
        group.bench_function(BenchmarkId::new(id, "compile"), |b| {
            b.iter_custom(time(&compiling))
        });
        // Fill the cache first: every timed load is then a cache hit.
        runtime.block_on(cached.inspect(path)).expect("load");
        group.bench_function(BenchmarkId::new(id, "cached"), |b| {
            b.iter_custom(time(&cached))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
