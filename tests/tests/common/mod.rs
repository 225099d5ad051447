//! Set-up shared by the end-to-end tests.

#![allow(dead_code)]

use llmhost::{Host, HostBuilder, Limits};
use llmhost_simulator::{Simulator, Vendor};
use std::path::PathBuf;
use std::time::Duration;

/// Compiled components are cached here across test runs.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// Limits for tests: a small pool, short CPU budget.
pub fn test_limits() -> Limits {
    Limits {
        max_concurrent_instances: 8,
        cpu_time: Duration::from_millis(500),
        memory_bytes: 64 << 20,
        ..Limits::default()
    }
}

/// A builder for a test host: built-ins, test cache, no environment.
pub fn builder() -> HostBuilder {
    Host::builder()
        .ignore_plugin_env()
        .cache_dir(Some(cache_dir()))
        .limits(test_limits())
}

/// A host with the built-in providers.
pub async fn host() -> Host {
    builder().build().await.expect("host starts")
}

/// A simulator and an OpenAI target pointing at it.
pub async fn openai_sim() -> (Simulator, llmhost::Target) {
    let sim = Simulator::start().await.expect("simulator starts");
    let target = llmhost::Target::new("openai")
        .base_url(sim.base_url(Vendor::OpenAi))
        .api_key("sk-test")
        .timeout(Duration::from_secs(20));
    let mut target = target;
    target.use_env = false;
    (sim, target)
}

/// A plugin directory with each component installed as an operator would
/// (`llmhost plugins install`): copied under its provider id with the
/// grant recorded beside it. Kept alive by the returned guard.
pub async fn installed_dir(components: &[(&str, llmhost::Grant)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("plugin dir");
    let installer = builder().build().await.expect("host starts");
    for (component, grant) in components {
        installer
            .install_plugin(dir.path(), std::path::Path::new(component), grant)
            .await
            .expect("plugin installs");
    }
    dir
}

/// A grant of nothing but the plugin's own `LLMHOST_<ID>_*` variables.
pub fn no_grant() -> llmhost::Grant {
    llmhost::Grant::default()
}

/// The least a contract 0.1 plugin (or a 0.2 plugin that signs its own
/// requests) installs with: the key granted, since the key enters it.
pub fn key_grant() -> llmhost::Grant {
    llmhost::Grant {
        key: true,
        ..no_grant()
    }
}
