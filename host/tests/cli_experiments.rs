//! `llmhost experiments …` and `llmhost chat --agent A --user U` as an
//! operator runs them: separate processes on one SQLite file, the
//! providers pointed at the vendor simulator. A user keeps their variant
//! from one process to the next, since the assignment is a hash, not
//! state.

mod common;

use common::gateway::Setup;
use llmhost_simulator::Simulator;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_from_the_command_line_keep_users_on_their_variant_across_runs() {
    let sim = Simulator::start().await.expect("simulator");
    let setup = Setup::new(&sim);
    setup.cli(&["agents", "create", "shop", "--json"]).await;
    setup
        .cli(&[
            "configs",
            "add",
            "--agent",
            "shop",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--json",
        ])
        .await;
    let created = setup
        .cli(&[
            "experiments",
            "create",
            "sizes",
            "--agent",
            "shop",
            "--variant",
            "control:1:openai/gpt-4o-mini",
            "--variant",
            "big:1:openai/gpt-4o:temperature=0.4,max_tokens=200",
            "--sticky",
            "user",
            "--json",
        ])
        .await;
    let variants = &created["experiment"]["variants"];
    assert_eq!(variants[1]["temperature"], 0.4);
    assert_eq!(variants[1]["max_tokens"], 200);

    let bad = setup
        .run(&[
            "experiments",
            "create",
            "bad",
            "--agent",
            "shop",
            "--variant",
            "control:1:openai",
            "--variant",
            "x:1:openai/gpt-4o",
            "--json",
        ])
        .await;
    assert_eq!(bad.status.code(), Some(2));

    // Each user's variant, by two runs of the binary.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for run in 0..2 {
        for user in ["ada", "bob", "cyd", "dee"] {
            let answer = setup
                .cli(&["chat", "--agent", "shop", "--user", user, "hello", "--json"])
                .await;
            assert_eq!(answer["experiment"], "sizes");
            let variant = answer["variant"].as_str().expect("variant").to_owned();
            let model = if variant == "big" {
                "gpt-4o"
            } else {
                "gpt-4o-mini"
            };
            assert_eq!(answer["model"], model, "{answer}");
            if run == 0 {
                seen.insert(user.to_owned(), variant);
            } else {
                assert_eq!(seen[user], variant, "{user} changed variant between runs");
            }
        }
    }

    let report = setup
        .cli(&["experiments", "report", "sizes", "--json"])
        .await;
    for v in report["variants"].as_array().expect("variants") {
        // Two calls of each user, one streamed of ada's.
        let name = v["name"].as_str().unwrap();
        let calls: usize = seen
            .iter()
            .filter(|(_, s)| *s == name)
            .map(|(user, _)| if user.ends_with("-streamed") { 1 } else { 2 })
            .sum();
        assert_eq!(v["requests"], calls as u64, "{report}");
        assert_eq!(v["errors"], 0);
    }
    let text = setup.run(&["experiments", "report", "sizes"]).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("VARIANT") && text.contains("control"),
        "{text}"
    );

    let list = setup.cli(&["experiments", "list", "--json"]).await;
    assert_eq!(list["experiments"][0]["status"], "active");

    let stopped = setup.cli(&["experiments", "stop", "sizes", "--json"]).await;
    assert_eq!(stopped["experiment"]["status"], "stopped");
    let answer = setup
        .cli(&[
            "chat", "--agent", "shop", "--user", "ada", "hello", "--json",
        ])
        .await;
    assert_eq!(answer["experiment"], serde_json::Value::Null);
    assert_eq!(answer["model"], "gpt-4o-mini");
    let again = setup.run(&["experiments", "stop", "sizes", "--json"]).await;
    assert!(!again.status.success());
    let error = common::json_of(&again);
    assert_eq!(error["error"]["kind"], "conflict");
    let after = setup
        .cli(&["experiments", "report", "sizes", "--json"])
        .await;
    assert_eq!(after["variants"], report["variants"]);
}
