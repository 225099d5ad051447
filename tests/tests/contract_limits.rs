//! The host's limits and request checks on the contract 0.2 path: a plugin
//! that spins or hoards memory while preparing, panics while parsing or
//! decoding, prepares a request for another host, or asks for requests
//! forever is stopped with a typed error, nothing is sent that should not
//! be, and the host keeps serving (`tests/plugins/unruly`).

mod common;

use common::{builder, installed_dir, no_grant, test_limits};
use llmhost::types::{ChatRequest, Message};
use llmhost::{Host, Limits, Target};
use llmhost_simulator::{Simulator, Vendor};
use llmhost_tests::plugins;
use std::time::Duration;

async fn unruly_host(limits: Limits) -> (tempfile::TempDir, Host) {
    let dir = installed_dir(&[(plugins::UNRULY, no_grant())]).await;
    let host = builder()
        .plugin_dir(dir.path())
        .limits(limits)
        .build()
        .await
        .expect("host");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    (dir, host)
}

fn target(sim: &Simulator) -> Target {
    let mut target = Target::new("unruly")
        .base_url(sim.base_url(Vendor::OpenAi))
        .api_key("sk-unruly")
        .timeout(Duration::from_secs(20));
    target.use_env = false;
    target
}

async fn still_serves(host: &Host, sim: &Simulator) {
    let ok = host
        .chat(&target(sim), &ChatRequest::simple("ok", "go"))
        .await
        .expect("the next call works");
    assert_eq!(ok.response.content, "status 200");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_spinning_or_hoarding_while_preparing_is_stopped_and_sends_nothing() {
    let (_dir, host) = unruly_host(test_limits()).await;
    let sim = Simulator::start().await.expect("sim");
    for (model, kind) in [
        ("spin", "cpu_limit_exceeded"),
        ("hog", "memory_limit_exceeded"),
    ] {
        let err = host
            .chat(&target(&sim), &ChatRequest::simple(model, "go"))
            .await
            .expect_err("stopped");
        assert_eq!(err.kind(), kind, "{model}: {err}");
    }
    assert!(sim.requests().is_empty(), "nothing was sent");
    still_serves(&host, &sim).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_while_parsing_or_decoding_is_a_typed_trap() {
    let (_dir, host) = unruly_host(test_limits()).await;
    let sim = Simulator::start().await.expect("sim");
    let err = host
        .chat(&target(&sim), &ChatRequest::simple("panic-parse", "go"))
        .await
        .expect_err("trap");
    assert_eq!(err.kind(), "plugin_trap", "{err}");
    assert_eq!(
        sim.requests().len(),
        1,
        "the request went out before the parse"
    );

    let mut stream = host
        .stream_once(&target(&sim), &ChatRequest::simple("panic-feed", "go"))
        .await
        .expect("the stream opens");
    let err = stream
        .next()
        .await
        .expect("an item")
        .expect_err("the trap surfaces");
    assert_eq!(err.kind(), "plugin_trap", "{err}");
    assert!(stream.next().await.is_none(), "the stream is over");
    still_serves(&host, &sim).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prepared_path_cannot_name_another_host() {
    let (_dir, host) = unruly_host(test_limits()).await;
    let sim = Simulator::start().await.expect("sim");
    let elsewhere = Simulator::start().await.expect("second sim");
    let path = |path: String| ChatRequest::new("path", vec![Message::user(path)]);

    let ok = host
        .chat(&target(&sim), &path("/models".into()))
        .await
        .expect("a path below the base URL");
    assert_eq!(ok.response.content, "status 200");

    let other = elsewhere.addr();
    for escape in [
        format!("//{other}/openai/v1/models"),
        format!("http://{other}/openai/v1/models"),
        "models".to_owned(),
        "/models\r\nhost: elsewhere".to_owned(),
        "\\\\elsewhere\\models".to_owned(),
    ] {
        let err = host
            .chat(&target(&sim), &path(escape.clone()))
            .await
            .expect_err("refused");
        assert!(
            matches!(err.kind().as_str(), "protocol" | "host_denied"),
            "{escape:?}: {err}"
        );
    }
    assert!(
        elsewhere.requests().is_empty(),
        "nothing reached another host"
    );
    assert_eq!(sim.requests().len(), 1, "only the good path was sent");
    still_serves(&host, &sim).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_asking_for_requests_forever_is_stopped_at_the_limit() {
    let (_dir, host) = unruly_host(Limits {
        max_outbound_requests: 4,
        ..test_limits()
    })
    .await;
    let sim = Simulator::start().await.expect("sim");
    let err = host
        .chat(&target(&sim), &ChatRequest::simple("again", "go"))
        .await
        .expect_err("stopped");
    assert_eq!(err.kind(), "request_limit_exceeded", "{err}");
    assert_eq!(sim.requests().len(), 4, "the fifth request was not sent");
    still_serves(&host, &sim).await;
}
