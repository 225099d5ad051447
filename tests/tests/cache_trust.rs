//! The compiled-component cache runs only what this host wrote: an artifact
//! must carry a MAC under the user's cache key. Planted, modified, linked
//! or renamed artifacts are compiled again instead of run, and a key file
//! others can read turns the cache off without failing a load.
//!
//! Every test runs in a child process of this test binary with its own
//! `XDG_CONFIG_HOME`, so the host reads or creates the test's own cache key
//! and never touches (or, in the last test, weakens) the user's. The child
//! is the same test function, told by an environment variable to run the
//! body; setting the variable in this process instead would race with the
//! other tests' threads.

#![cfg(unix)]

mod common;

use llmhost::{CompileSource, Host};
use llmhost_tests::plugins;
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the child: the test's private root directory.
const CHILD_ROOT: &str = "LLMHOST_CACHE_TRUST_ROOT";

/// Bytes before wasmtime's serialized component in an artifact: magic (8),
/// format version (4), MAC (32); see `host/src/runtime/cache.rs`.
const HEADER_LEN: usize = 44;

/// One test's directories.
struct Env {
    root: PathBuf,
    cache: PathBuf,
    key_file: PathBuf,
}

impl Env {
    /// A plugin directory holding copies of `components`.
    fn plugin_dir(&self, name: &str, components: &[&str]) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).expect("plugin dir");
        for component in components {
            let path = Path::new(component);
            let file = path.file_name().expect("component file name");
            std::fs::copy(path, dir.join(file)).expect("copy plugin");
        }
        dir
    }

    /// Starts a host on `plugins` with this test's cache.
    async fn start(&self, plugins: &Path) -> Host {
        let host = common::builder()
            .without_builtins()
            .plugin_dir(plugins)
            .cache_dir(Some(self.cache.clone()))
            .build()
            .await
            .expect("host starts");
        assert!(
            host.load_errors().is_empty(),
            "every plugin loads: {:?}",
            host.load_errors()
        );
        assert!(!host.plugins().is_empty(), "plugins loaded");
        host
    }

    /// How each plugin of a fresh start on `plugins` became ready.
    async fn sources(&self, plugins: &Path) -> Vec<CompileSource> {
        self.start(plugins)
            .await
            .plugins()
            .iter()
            .map(|p| p.compile)
            .collect()
    }

    /// The artifacts in the cache directory.
    fn artifacts(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.cache) {
            Ok(entries) => entries
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|ext| ext == "cwasm"))
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => panic!("cannot list the cache: {err}"),
        };
        paths.sort();
        paths
    }

    /// The only artifact in the cache.
    fn artifact(&self) -> PathBuf {
        let artifacts = self.artifacts();
        assert_eq!(artifacts.len(), 1, "one artifact: {artifacts:?}");
        artifacts[0].clone()
    }
}

/// Runs `body` in a child process whose config directory is a fresh
/// temporary directory. `name` is the calling test's name.
fn isolated<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        let root = PathBuf::from(root);
        let env = Env {
            cache: root.join("cache"),
            key_file: root.join("config").join("llmhost").join("cache.key"),
            root,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body(env));
        return;
    }
    let root = tempfile::tempdir().expect("test root");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROOT, root.path())
        .env("XDG_CONFIG_HOME", root.path().join("config"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run the test in a child process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its child process:\n{stdout}\n{stderr}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_legitimate_artifact_loads_from_the_cache_on_the_second_start() {
    isolated(
        "a_legitimate_artifact_loads_from_the_cache_on_the_second_start",
        |env| async move {
            let plugins = env.plugin_dir("plugins", &[plugins::OPENAI_RENAMED]);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            // The key was created on first use, private, in the config
            // directory and not in the cache directory.
            assert_eq!(mode(&env.key_file), 0o600);
            assert_eq!(std::fs::read(&env.key_file).expect("key").len(), 32);
            assert_eq!(mode(&env.artifact()), 0o600);

            let host = env.start(&plugins).await;
            assert_eq!(host.plugins()[0].compile, CompileSource::Cache);

            // `llmhost cache` still lists and prunes authenticated artifacts.
            let report = host.component_cache().expect("cache report");
            assert_eq!(report.artifacts.len(), 1);
            assert!(report.artifacts[0].in_use);
            assert_eq!(report.artifacts[0].path, env.artifact());
            assert!(host.prune_component_cache(false).expect("prune").is_empty());
            assert_eq!(host.prune_component_cache(true).expect("prune").len(), 1);
            assert!(env.artifacts().is_empty());
            drop(host);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
        },
    );
}

#[test]
fn a_planted_artifact_is_compiled_not_loaded() {
    isolated(
        "a_planted_artifact_is_compiled_not_loaded",
        |env| async move {
            let plugins = env.plugin_dir("plugins", &[plugins::OPENAI_RENAMED]);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            // The second start deserializes (and so would run) exactly the
            // bytes after the header: wasmtime's own serialization of this
            // component for this engine.
            assert_eq!(env.sources(&plugins).await, [CompileSource::Cache]);
            let path = env.artifact();
            let artifact = std::fs::read(&path).expect("artifact");
            let serialized = artifact[HEADER_LEN..].to_vec();
            assert_eq!(
                &serialized[..4],
                b"\x7fELF",
                "the header is {HEADER_LEN} bytes and a native object follows"
            );

            // Planted the way a clone or an unpacked archive would leave it: a
            // plain write at the path the cache uses, mode 0644.
            std::fs::remove_file(&path).expect("remove");
            std::fs::write(&path, &serialized).expect("plant");
            chmod(&path, 0o644);
            // It has the exact shape the old check trusted: a regular file
            // (not a link), owned by this user (like a file we just created),
            // that neither group nor others may write.
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let ours = env.root.join("ours");
            std::fs::write(&ours, b"").expect("own file");
            assert!(meta.file_type().is_file());
            assert_eq!(meta.uid(), std::fs::metadata(&ours).expect("stat").uid());
            assert_eq!(meta.mode() & 0o022, 0);

            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            // The good artifact replaced it.
            assert_eq!(mode(&path), 0o600);
            assert_eq!(
                std::fs::read(&path).expect("rewritten").len(),
                artifact.len()
            );
            assert_eq!(env.sources(&plugins).await, [CompileSource::Cache]);
        },
    );
}

#[test]
fn a_modified_artifact_is_recompiled_and_rewritten() {
    isolated(
        "a_modified_artifact_is_recompiled_and_rewritten",
        |env| async move {
            let plugins = env.plugin_dir("plugins", &[plugins::OPENAI_RENAMED]);
            env.sources(&plugins).await;
            let path = env.artifact();
            let mut artifact = std::fs::read(&path).expect("artifact");
            let middle = HEADER_LEN + (artifact.len() - HEADER_LEN) / 2;
            artifact[middle] ^= 0x01;
            std::fs::write(&path, &artifact).expect("flip a byte");

            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            assert_ne!(std::fs::read(&path).expect("rewritten"), artifact);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Cache]);
        },
    );
}

#[test]
fn a_symlink_at_the_artifact_path_is_not_followed() {
    isolated(
        "a_symlink_at_the_artifact_path_is_not_followed",
        |env| async move {
            let plugins = env.plugin_dir("plugins", &[plugins::OPENAI_RENAMED]);
            env.sources(&plugins).await;
            let path = env.artifact();
            // The link points at a valid artifact: only not following it keeps
            // it from loading.
            let elsewhere = env.root.join("elsewhere.cwasm");
            std::fs::rename(&path, &elsewhere).expect("move");
            std::os::unix::fs::symlink(&elsewhere, &path).expect("symlink");
            let target = std::fs::read(&elsewhere).expect("target");

            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            assert!(
                std::fs::symlink_metadata(&path)
                    .expect("stat")
                    .file_type()
                    .is_file(),
                "the link was replaced by a regular artifact"
            );
            assert_eq!(std::fs::read(&elsewhere).expect("target"), target);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Cache]);
        },
    );
}

#[test]
fn an_artifact_copied_to_another_components_name_is_recompiled() {
    isolated(
        "an_artifact_copied_to_another_components_name_is_recompiled",
        |env| async move {
            let first = env.plugin_dir("first", &[plugins::OPENAI_RENAMED]);
            let second = env.plugin_dir("second", &[plugins::MISBEHAVE]);
            env.sources(&first).await;
            let first_artifact = env.artifact();
            env.sources(&second).await;
            let second_artifact = env
                .artifacts()
                .into_iter()
                .find(|p| p != &first_artifact)
                .expect("a second artifact");

            std::fs::copy(&first_artifact, &second_artifact).expect("copy over");
            assert_eq!(env.sources(&second).await, [CompileSource::Compiled]);
            // Under its own name the copied artifact is still good.
            assert_eq!(env.sources(&first).await, [CompileSource::Cache]);
            assert_eq!(env.sources(&second).await, [CompileSource::Cache]);
        },
    );
}

#[test]
fn a_key_file_others_can_read_turns_the_cache_off() {
    isolated(
        "a_key_file_others_can_read_turns_the_cache_off",
        |env| async move {
            let plugins = env.plugin_dir("plugins", &[plugins::OPENAI_RENAMED]);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            let path = env.artifact();
            let artifact = std::fs::read(&path).expect("artifact");

            chmod(&env.key_file, 0o644);
            // The load still succeeds, by compiling; the valid artifact is
            // not loaded, not counted as in use and not rewritten.
            let host = env.start(&plugins).await;
            assert_eq!(host.plugins()[0].compile, CompileSource::Compiled);
            let report = host.component_cache().expect("cache report");
            assert!(report.artifacts.iter().all(|a| !a.in_use));
            drop(host);
            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            assert_eq!(std::fs::read(&path).expect("artifact"), artifact);
            assert_eq!(mode(&env.key_file), 0o644, "left as the user set it");

            // A readable key there before the first start: nothing is cached.
            std::fs::remove_dir_all(&env.cache).expect("clear cache");
            assert_eq!(env.sources(&plugins).await, [CompileSource::Compiled]);
            assert!(env.artifacts().is_empty());
        },
    );
}

/// An embedder's own key location: created there, private, and it
/// authenticates the artifacts of the next start.
#[tokio::test]
async fn an_embedder_chooses_where_the_cache_key_lives() {
    let root = tempfile::tempdir().expect("dir");
    let cache = root.path().join("cache");
    let key_file = root.path().join("config").join("cache.key");
    let start = || async {
        common::builder()
            .cache_dir(Some(cache.clone()))
            .cache_key_file(&key_file)
            .build()
            .await
            .expect("host starts")
            .plugins()
            .iter()
            .map(|p| p.compile)
            .collect::<Vec<_>>()
    };
    assert!(start().await.iter().all(|c| *c == CompileSource::Compiled));
    let meta = std::fs::metadata(&key_file).expect("the key was created there");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(start().await.iter().all(|c| *c == CompileSource::Cache));
}
