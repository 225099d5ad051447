//! Helpers shared by the bench binaries that are not criterion benches.
// Each bench binary compiles this module and uses only part of it.
#![allow(dead_code)]

use llmhost::types::{ChatRequest, Message};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `llmhost simulate` in a child process, killed on drop.
pub struct SimulatorProcess {
    child: Child,
    addr: SocketAddr,
}

impl SimulatorProcess {
    /// Starts the simulator on a free loopback port and waits until it
    /// listens.
    pub fn start() -> SimulatorProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmhost"))
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .env("LLMHOST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start `llmhost simulate`");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).expect("simulator output");
        // Keep reading, or its later lines would hit a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected simulator output: {first:?}"));
        SimulatorProcess { child, addr }
    }

    /// `http://ADDR/PATH`, e.g. `base_url("openai/v1")`.
    pub fn base_url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Median, 99th percentile and maximum of a set of latencies.
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Sorts `samples` in place (nearest-rank percentiles).
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = (p * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

/// `123.4 µs`.
pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// `a - b` in microseconds, with its sign.
pub fn signed_micros(a: Duration, b: Duration) -> String {
    format!("{:+.1} µs", (a.as_secs_f64() - b.as_secs_f64()) * 1e6)
}

/// A positive number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name}: expected a positive number, got {value:?}")),
        Err(_) => default,
    }
}

/// Raises the soft open-file limit to the hard one: a thousand streams
/// need a thousand sockets on each end.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            eprintln!("cannot raise the open-file limit: {err}");
        }
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The runtime both sides of a bench run on: multi-threaded (as the CLI and
/// gateway run), or single-threaded with `BENCH_CURRENT_THREAD=1`.
pub fn runtime() -> tokio::runtime::Runtime {
    if std::env::var_os("BENCH_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
    } else {
        tokio::runtime::Runtime::new().expect("tokio")
    }
}

/// A two-message chat request: a system prompt and `prompt`.
pub fn request(model: &str, prompt: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![
            Message::system("You are a helpful assistant."),
            Message::user(prompt),
        ],
    )
}

/// A plugin directory holding the contract 0.1 test fixture (the OpenAI
/// provider as written for 0.1, id `openai-v01`), installed with the key
/// granted as a 0.1 plugin needs; `None` when the fixture is not built
/// (`cargo test -p llmhost-tests --no-run` builds it).
pub fn v0_1_fixture_dir(runtime: &tokio::runtime::Runtime) -> Option<tempfile::TempDir> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-plugins/wasm32-wasip2/plugin/llmhost_test_plugin_openai_v0_1.wasm");
    if !fixture.exists() {
        eprintln!(
            "no contract 0.1 fixture built: `cargo test -p llmhost-tests --no-run` builds it"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("plugin dir");
    let grant = llmhost::Grant {
        key: true,
        ..llmhost::Grant::default()
    };
    let installer = runtime
        .block_on(
            llmhost::Host::builder()
                .ignore_plugin_env()
                .cache_dir(None)
                .build(),
        )
        .expect("host");
    runtime
        .block_on(installer.install_plugin(dir.path(), &fixture, &grant))
        .expect("the 0.1 fixture installs");
    Some(dir)
}
