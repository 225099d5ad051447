//! What the host adds to each request: a fresh store and plugin instance,
//! the call through the component boundary, the HTTP gate and the guest's
//! JSON work, measured against the same request sent natively.
//!
//! Both sides POST the same chat-completions body over one pooled
//! keep-alive connection to the same in-process HTTP server, which answers
//! with a canned OpenAI response, and both parse that response. The
//! difference is the host's cost per request.
//!
//! Run: `cargo bench -p llmhost --bench request_overhead`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llmhost::types::{ChatRequest, Message, TokenInput};
use llmhost::{Host, Target};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const CANNED: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":9,"total_tokens":28},"system_fingerprint":"fp_bench"}"#;

/// An HTTP/1.1 server answering every request with the canned completion.
async fn canned_server() -> SocketAddr {
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
            tokio::spawn(async move {
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = request.into_body().collect().await;
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(CANNED.as_bytes())))
                                .expect("response"),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![
            Message::system("You are a helpful assistant."),
            Message::user("Hello!"),
        ],
    )
}

/// The request as OpenAI's wire format, built natively.
fn native_body(request: &ChatRequest) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                llmhost::types::Role::System => "system",
                llmhost::types::Role::User => "user",
                llmhost::types::Role::Assistant => "assistant",
                llmhost::types::Role::Tool => "tool",
            };
            serde_json::json!({"role": role, "content": m.text_content()})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"model": request.model, "messages": messages}))
        .expect("json")
}

fn bench(c: &mut Criterion) {
    let runtime = if std::env::var_os("BENCH_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
    } else {
        Runtime::new().expect("tokio")
    };
    let addr = runtime.block_on(canned_server());
    let cache = tempfile::tempdir().expect("cache dir");
    let host = runtime
        .block_on(
            Host::builder()
                .ignore_plugin_env()
                .cache_dir(Some(cache.path().to_path_buf()))
                .build(),
        )
        .expect("host");
    let mut target = Target::new("openai")
        .base_url(format!("http://{addr}/v1"))
        .api_key("sk-bench");
    target.use_env = false;
    let req = request();
    let url: hyper::Uri = format!("http://{addr}/v1/chat/completions")
        .parse()
        .expect("uri");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    let mut group = c.benchmark_group("request");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("native_hyper_serde", |b| {
        b.to_async(&runtime).iter(|| async {
            let body = native_body(&req);
            let request = hyper::Request::post(url.clone())
                .header("authorization", "Bearer sk-bench")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let response = client.request(request).await.expect("response");
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(value["usage"]["prompt_tokens"], 19);
        })
    });
    group.bench_function("host_chat_wasm", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = host.chat(&target, &req).await.expect("chat");
            assert_eq!(outcome.response.usage.input_tokens, 19);
        })
    });
    group.bench_function("host_call_without_io", |b| {
        b.to_async(&runtime).iter(|| async {
            let count = host
                .count_tokens(&target, "gpt-4o-mini", &TokenInput::Text("Hello!".into()))
                .await
                .expect("count");
            assert_eq!(count.tokens, 2);
        })
    });
    group.finish();

    // Start-up: compiling the built-in component versus loading it from
    // the cache, as a second start does.
    let start = |cache_dir: Option<std::path::PathBuf>| {
        let runtime = &runtime;
        move |iters: u64| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let builder = Host::builder()
                    .ignore_plugin_env()
                    .cache_dir(cache_dir.clone());
                let host = runtime.block_on(builder.build()).expect("host");
                total += started.elapsed();
                drop(host);
            }
            total
        }
    };
    let mut group = c.benchmark_group("startup");
    group.sample_size(10);
    group.bench_function("compile_components", |b| b.iter_custom(start(None)));
    group.bench_function("load_cached_components", |b| {
        b.iter_custom(start(Some(cache.path().to_path_buf())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
