//! The model catalogue as the host uses it: costs from the plugins'
//! prices, operator overrides without a rebuild, unknown models passed
//! through or refused in strict mode.

mod common;

use common::{builder, openai_sim};
use llmhost::registry::ModelOverrides;
use llmhost::registry::rust_decimal::Decimal;
use llmhost::types::ChatRequest;
use std::str::FromStr;

#[tokio::test]
async fn an_unknown_model_passes_through_with_an_unknown_cost() {
    let host = builder().build().await.expect("host");
    let (sim, target) = openai_sim().await;
    sim.enqueue(
        llmhost_simulator::Vendor::OpenAi,
        llmhost_simulator::Reply::json(
            200,
            serde_json::json!({
                "id": "chatcmpl-new", "object": "chat.completion", "created": 1, "model": "gpt-7",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
            }),
        ),
    );
    let outcome = host
        .chat(&target, &ChatRequest::simple("gpt-7", "hi"))
        .await
        .expect("passes through");
    assert_eq!(outcome.response.content, "hi");
    assert_eq!(outcome.cost_usd, None);
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn strict_mode_refuses_unknown_models_before_sending() {
    let host = builder().strict_models(true).build().await.expect("host");
    let (sim, target) = openai_sim().await;
    let err = host
        .chat(&target, &ChatRequest::simple("gpt-7", "hi"))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), "unknown_model");
    let err = host
        .stream(&target, &ChatRequest::simple("gpt-7", "hi"))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), "unknown_model");
    assert!(sim.requests().is_empty(), "nothing was sent");
    host.chat(&target, &ChatRequest::simple("gpt-4o", "hi"))
        .await
        .expect("known models still work");
}

#[tokio::test]
async fn operator_overrides_correct_prices_and_add_models() {
    let overrides = ModelOverrides::from_toml(
        r#"
        [[model]]
        provider = "openai"
        id = "gpt-4o-mini"
        input_usd_per_mtok = "1"
        output_usd_per_mtok = "2"

        [[model]]
        provider = "openai"
        id = "gpt-7"
        input_usd_per_mtok = "0.000001"
        output_usd_per_mtok = "100"
        context_window = 2000000
        "#,
    )
    .expect("valid");
    let host = builder()
        .model_overrides(overrides)
        .strict_models(true)
        .build()
        .await
        .expect("host");
    let (sim, target) = openai_sim().await;
    let outcome = host
        .chat(&target, &ChatRequest::simple("gpt-4o-mini", "price check"))
        .await
        .expect("chat");
    let usage = outcome.response.usage;
    let expected = Decimal::from(usage.input_tokens) * Decimal::from_str("0.000001").expect("d")
        + Decimal::from(usage.output_tokens) * Decimal::from_str("0.000002").expect("d");
    assert_eq!(outcome.cost_usd, Some(expected.normalize()));

    let model = host.catalogue().get("openai", "gpt-7").expect("added");
    assert_eq!(model.context_window, 2_000_000);
    sim.enqueue(
        llmhost_simulator::Vendor::OpenAi,
        llmhost_simulator::Reply::json(
            200,
            serde_json::json!({
                "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-7",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000000, "completion_tokens": 3, "total_tokens": 1000003}
            }),
        ),
    );
    let outcome = host
        .chat(&target, &ChatRequest::simple("gpt-7", "hi"))
        .await
        .expect("added model is served in strict mode");
    // 1e6 tokens at $0.000001/M plus 3 at $100/M.
    assert_eq!(
        outcome.cost_usd,
        Some(Decimal::from_str("0.000301").expect("d"))
    );
}

#[tokio::test]
async fn invalid_overrides_stop_the_host_with_a_clear_error() {
    let overrides = ModelOverrides::from_toml(
        "[[model]]\nprovider = \"openai\"\nid = \"brand-new\"\ninput_usd_per_mtok = \"1\"",
    )
    .expect("parses");
    let err = builder()
        .model_overrides(overrides)
        .build()
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), "invalid_config");
    assert!(err.to_string().contains("output_usd_per_mtok"), "{err}");
}
