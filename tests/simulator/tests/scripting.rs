//! Scripted replies, request recording, timing and connection accounting.

mod common;

use std::time::{Duration, Instant};

use common::{client, post_chat, sse_payloads};
use futures::StreamExt;
use llmhost_simulator::{Reply, Simulator, Vendor, sse_data};
use serde_json::{Value, json};

fn chat_request() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn scripted_replies_are_used_in_fifo_order_then_the_default() {
    let sim = Simulator::start().await.unwrap();
    let base = sim.base_url(Vendor::OpenAi);
    sim.enqueue(
        Vendor::OpenAi,
        Reply::openai_error(
            429,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached",
        )
        .header("retry-after", "2"),
    );
    sim.enqueue(Vendor::OpenAi, Reply::json(200, json!({"first": false})));
    assert_eq!(sim.pending(Vendor::OpenAi), 2);

    let http = client();
    // Scripted replies stand in for the chat endpoint only: other paths and
    // the models list keep their default behaviour.
    let models = http
        .get(format!("{base}/models"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(sim.pending(Vendor::OpenAi), 2);

    // Scripted replies skip validation, so even a keyless request gets one.
    let first = post_chat(&http, &base, None, &chat_request()).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(first.headers()["content-type"], "application/json");
    let body: Value = first.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    );

    let second = post_chat(&http, &base, Some("k"), &chat_request()).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<Value>().await.unwrap(),
        json!({"first": false})
    );

    let third: Value = post_chat(&http, &base, Some("k"), &chat_request())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(third["object"], "chat.completion");
    assert_eq!(sim.pending(Vendor::OpenAi), 0);
}

#[tokio::test]
async fn requests_are_recorded_in_order_with_headers_and_body() {
    let sim = Simulator::start().await.unwrap();
    let base = sim.base_url(Vendor::OpenAi);
    let http = client();
    post_chat(&http, &base, Some("sk-abc"), &chat_request()).await;
    http.get(format!("{base}/models"))
        .header("X-Custom", "Yes")
        .send()
        .await
        .unwrap();

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 2);
    let chat = &recorded[0];
    assert_eq!(chat.vendor, Some(Vendor::OpenAi));
    assert_eq!(chat.method, "POST");
    assert_eq!(chat.path, "/openai/v1/chat/completions");
    assert_eq!(chat.header("authorization"), Some("Bearer sk-abc"));
    assert_eq!(chat.header("Content-Type"), Some("application/json"));
    assert_eq!(chat.json(), Some(chat_request()));

    let models = &recorded[1];
    assert_eq!(
        (models.method.as_str(), models.path.as_str()),
        ("GET", "/openai/v1/models")
    );
    assert!(
        models
            .headers
            .contains(&("x-custom".to_owned(), "Yes".to_owned()))
    );
    assert!(models.body.is_empty() && models.json().is_none());
}

#[tokio::test]
async fn raw_parts_arrive_as_separate_pieces_after_their_delays() {
    let sim = Simulator::start().await.unwrap();
    let parts: Vec<Vec<u8>> = vec![
        b"data: {\"a\":".to_vec(),
        b"1}\r\n\r\n".to_vec(),
        b"data: [DONE]\r\n\r\n".to_vec(),
    ];
    let delay = Duration::from_millis(120);
    sim.enqueue(
        Vendor::OpenAi,
        Reply::raw(200, parts.clone())
            .header("content-type", "text/event-stream")
            .delay_each(delay),
    );

    let started = Instant::now();
    let response = post_chat(
        &client(),
        &sim.base_url(Vendor::OpenAi),
        Some("k"),
        &chat_request(),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    while let Some(piece) = stream.next().await {
        received.push((piece.unwrap().to_vec(), started.elapsed()));
    }
    let pieces: Vec<Vec<u8>> = received.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(pieces, parts);
    for (i, (_, at)) in received.iter().enumerate() {
        assert!(*at >= delay * (i as u32 + 1), "piece {i} arrived at {at:?}");
    }
}

#[tokio::test]
async fn sse_reply_defaults_to_event_stream_and_writes_events_verbatim() {
    let sim = Simulator::start().await.unwrap();
    let events = vec![
        sse_data(&json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})),
        "data: [DONE]\n\n".to_owned(),
    ];
    sim.enqueue(Vendor::OpenAi, Reply::sse(events.clone()));
    sim.enqueue(
        Vendor::OpenAi,
        Reply::sse(vec!["data: {}\n\n".to_owned()])
            .header("Content-Type", "text/event-stream; charset=utf-8"),
    );
    let base = sim.base_url(Vendor::OpenAi);
    let http = client();

    let response = post_chat(&http, &base, Some("k"), &chat_request()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert_eq!(text, events.concat());
    assert_eq!(sse_payloads(&text)[1], "[DONE]");

    let response = post_chat(&http, &base, Some("k"), &chat_request()).await;
    let content_types: Vec<_> = response.headers().get_all("content-type").iter().collect();
    assert_eq!(content_types, ["text/event-stream; charset=utf-8"]);
}

#[tokio::test]
async fn hang_keeps_the_body_open_until_the_simulator_is_dropped() {
    let sim = Simulator::start().await.unwrap();
    sim.enqueue(
        Vendor::OpenAi,
        Reply::sse(vec!["data: {\"partial\":true}\n\n".to_owned()]).hang(),
    );
    let response = post_chat(
        &client(),
        &sim.base_url(Vendor::OpenAi),
        Some("k"),
        &chat_request(),
    )
    .await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: {\"partial\":true}\n\n");
    let waited = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(waited.is_err(), "a hung body must not end");

    drop(sim);
    let after_drop = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("dropping the simulator closes hung connections");
    // The body was never finished, so the client sees a broken stream.
    assert!(matches!(after_drop, Some(Err(_))), "{after_drop:?}");
}

#[tokio::test]
async fn delay_headers_holds_back_the_status_line() {
    let sim = Simulator::start().await.unwrap();
    sim.enqueue(
        Vendor::OpenAi,
        Reply::json(200, json!({})).delay_headers(Duration::from_millis(150)),
    );
    let started = Instant::now();
    let response = post_chat(
        &client(),
        &sim.base_url(Vendor::OpenAi),
        Some("k"),
        &chat_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn connections_are_counted_and_reused() {
    let sim = Simulator::start().await.unwrap();
    assert_eq!(sim.connections(), 0);
    let base = sim.base_url(Vendor::OpenAi);

    let http = client();
    post_chat(&http, &base, Some("k"), &chat_request())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(sim.connections(), 1);
    // A keep-alive client reuses its connection.
    post_chat(&http, &base, Some("k"), &chat_request())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(sim.connections(), 1);

    let other = client();
    post_chat(&other, &base, Some("k"), &chat_request())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(sim.connections(), 2);

    // A bare TCP connection counts even if it never sends a request.
    let _idle = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    for _ in 0..100 {
        if sim.connections() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.connections(), 3);
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test]
async fn dropping_the_simulator_frees_its_port() {
    let sim = Simulator::start().await.unwrap();
    let addr = sim.addr();
    drop(sim);
    // The abort takes effect when the server task next runs.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
    let again = Simulator::bind(addr).await.expect("port is free again");
    assert_eq!(again.addr(), addr);
}

#[tokio::test]
async fn serve_forever_keeps_serving() {
    let sim = Simulator::start().await.unwrap();
    let base = sim.base_url(Vendor::OpenAi);
    let server = tokio::spawn(sim.serve_forever());
    let response = post_chat(&client(), &base, Some("k"), &chat_request()).await;
    assert_eq!(response.status(), 200);
    assert!(!server.is_finished());
    server.abort();
}

#[tokio::test]
async fn stream_delay_paces_the_default_stream() {
    let sim = Simulator::start().await.unwrap();
    sim.set_stream_delay(Duration::from_millis(20));
    let request = json!({
        "model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]
    });
    let started = Instant::now();
    let response = post_chat(
        &client(),
        &sim.base_url(Vendor::OpenAi),
        Some("k"),
        &request,
    )
    .await;
    let mut stream = response.bytes_stream();
    let mut pieces = 0;
    while let Some(piece) = stream.next().await {
        piece.unwrap();
        pieces += 1;
    }
    // role, 7 words, finish, [DONE]
    assert!(pieces >= 5, "{pieces} pieces");
    assert!(started.elapsed() >= Duration::from_millis(20 * 10));
}
