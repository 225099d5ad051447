//! `llmhost serve` as a child process in front of the vendor simulator,
//! with its own database, and the official Python SDKs
//! (`tests/sdk_clients/gateway.py`) as its clients.

use super::llmhost;
use llmhost_simulator::{Simulator, Vendor};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The master key of the tests' gateways, when they have one.
pub const MASTER_KEY: &str = "sk-llmhost-master-test";
/// base64 of 32 bytes: lets the CLI create virtual keys and the gateway
/// check them.
pub const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// How long a gateway may take to say it listens: on a cold component
/// cache it first compiles four providers, on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long usage rows may take to reach the database.
const USAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The line `llmhost serve` prints on stderr once it accepts connections.
const READY_LINE: &str = "llmhost gateway listening on http://";

/// (provider, the vendor it calls, a model of its) for every built-in
/// provider.
pub const PROVIDERS: &[(&str, Vendor, &str)] = &[
    ("openai", Vendor::OpenAi, "gpt-4o-mini"),
    ("deepseek", Vendor::DeepSeek, "deepseek-chat"),
    ("grok", Vendor::XAi, "grok-3"),
    ("claude", Vendor::Anthropic, "claude-sonnet-4-5"),
];

/// The environment variables of each vendor's base URL and key, and the
/// key the gateway is given for it.
const VENDOR_ENV: &[(Vendor, &str, &str, &str)] = &[
    (
        Vendor::OpenAi,
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "sk-upstream-openai",
    ),
    (
        Vendor::DeepSeek,
        "DEEPSEEK_BASE_URL",
        "DEEPSEEK_API_KEY",
        "sk-upstream-deepseek",
    ),
    (
        Vendor::XAi,
        "XAI_BASE_URL",
        "XAI_API_KEY",
        "xai-upstream-grok",
    ),
    (
        Vendor::Anthropic,
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "sk-ant-upstream-claude",
    ),
];

/// Variables of the machine's that would change what the gateway does.
const CLEARED: &[&str] = &[
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_BASE_URL",
    "XAI_API_KEY",
    "XAI_BASE_URL",
    "GROK_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "LLMHOST_MASTER_KEY",
    "LLMHOST_LISTEN",
    "LLMHOST_MODELS",
    "LLMHOST_STRICT_MODELS",
    "LLMHOST_TIMEOUT_SECS",
    "LLMHOST_REDIS_URL",
    "LLMHOST_SHARED_ON_UNAVAILABLE",
];

/// The key the gateway sends to `vendor`.
pub fn upstream_key(vendor: Vendor) -> &'static str {
    VENDOR_ENV
        .iter()
        .find(|(v, ..)| *v == vendor)
        .map(|(.., key)| *key)
        .expect("every vendor has a key")
}

/// A gateway's directory and environment, before and while it runs: the
/// CLI run through [`Setup::cli`] sees the same database and keys.
pub struct Setup {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// More arguments of `llmhost serve`.
    serve_args: Vec<String>,
}

impl Setup {
    /// Providers pointed at `sim`, a fresh database, an encryption key, and
    /// the master key [`MASTER_KEY`].
    pub fn new(sim: &Simulator) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let mut env = vec![
            (
                "LLMHOST_DB".to_owned(),
                dir.path().join("llmhost.db").display().to_string(),
            ),
            (
                "LLMHOST_ENCRYPTION_KEY".to_owned(),
                ENCRYPTION_KEY.to_owned(),
            ),
            // No key file of the machine's.
            (
                "LLMHOST_KEY_FILE".to_owned(),
                dir.path().join("encryption.key").display().to_string(),
            ),
            // The component cache's MAC key lives here; one shared by the
            // tests keeps them from recompiling every component.
            (
                "XDG_CONFIG_HOME".to_owned(),
                shared.join("cli-config").display().to_string(),
            ),
            ("LLMHOST_MASTER_KEY".to_owned(), MASTER_KEY.to_owned()),
        ];
        for (vendor, base_env, key_env, key) in VENDOR_ENV {
            env.push(((*base_env).to_owned(), sim.base_url(*vendor)));
            env.push(((*key_env).to_owned(), (*key).to_owned()));
        }
        Self {
            dir,
            env,
            serve_args: Vec::new(),
        }
    }

    /// With `args` added to `llmhost serve`.
    pub fn serve_args(mut self, args: &[&str]) -> Self {
        self.serve_args
            .extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// With `database` (a file path, or a database URL) instead of a file
    /// of its own: several gateways can share one.
    pub fn database(mut self, database: &str) -> Self {
        self.env.retain(|(name, _)| name != "LLMHOST_DB");
        self.env
            .push(("LLMHOST_DB".to_owned(), database.to_owned()));
        self
    }

    /// With the environment variable `name` set to `value`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Without a master key: only virtual keys, or none (open, loopback
    /// only).
    pub fn without_master_key(mut self) -> Self {
        self.env.retain(|(name, _)| name != "LLMHOST_MASTER_KEY");
        self
    }

    /// With `toml` as the settings file.
    pub fn settings(mut self, toml: &str) -> Self {
        let path = self.dir.path().join("llmhost.toml");
        std::fs::write(&path, toml).expect("write settings");
        self.env
            .push(("LLMHOST_CONFIG".to_owned(), path.display().to_string()));
        self
    }

    /// Without the encryption key, so stored virtual keys cannot be
    /// checked.
    pub fn without_encryption_key(mut self) -> Self {
        self.env
            .retain(|(name, _)| name != "LLMHOST_ENCRYPTION_KEY");
        self
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("llmhost.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = llmhost(args, &[]);
        for name in CLEARED {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Runs `llmhost ARGS` against this gateway's database and returns what
    /// it printed.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().expect("llmhost runs"))
            .await
            .expect("join")
    }

    /// Runs `llmhost ARGS`, which should end by itself within `limit`
    /// (`serve` refusing to start); kills it and fails the test if not.
    pub async fn run_briefly(&self, args: &[&str], limit: Duration) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("llmhost runs");
        let shown = args.join(" ");
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            while child.try_wait().expect("try_wait").is_none() {
                if started.elapsed() > limit {
                    let _ = child.kill();
                    let output = child.wait_with_output().expect("output");
                    panic!(
                        "llmhost {shown} still running after {limit:?}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.wait_with_output().expect("output")
        })
        .await
        .expect("join")
    }

    /// Runs `llmhost ARGS` (which should print one JSON object) and returns
    /// that object; fails the test if the command does.
    pub async fn cli(&self, args: &[&str]) -> Value {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "llmhost {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        super::json_of(&output)
    }

    /// Starts `llmhost serve --listen 127.0.0.1:0` and waits until it
    /// listens.
    pub async fn start(self) -> Gateway {
        self.start_on("127.0.0.1:0").await
    }

    /// Starts `llmhost serve --listen LISTEN` and waits until it listens.
    pub async fn start_on(self, listen: &str) -> Gateway {
        let mut args = vec!["serve", "--listen", listen];
        args.extend(self.serve_args.iter().map(String::as_str));
        let mut child = self
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("llmhost serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(READY_LINE) {
                    let _ = ready_tx.send(addr.trim().to_owned());
                }
                let mut log = lines.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let ready = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(START_TIMEOUT)).await;
        let mut gateway = Gateway {
            setup: self,
            child: Some(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            log,
        };
        match ready.expect("join") {
            Ok(addr) => {
                let addr: SocketAddr = addr.parse().expect("the printed address");
                gateway.addr = addr;
                gateway
            }
            Err(_) => {
                let status = gateway.child.as_mut().and_then(|c| c.try_wait().ok());
                panic!(
                    "llmhost serve did not say it listens (exit: {status:?}):\n{}",
                    gateway.log()
                );
            }
        }
    }
}

/// A running `llmhost serve`, killed when dropped.
pub struct Gateway {
    setup: Setup,
    child: Option<Child>,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// One row of `usage_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub request_id: Option<String>,
    pub route: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<String>,
    pub status: String,
    pub error_kind: Option<String>,
    pub attempt: u64,
    pub streamed: bool,
    pub virtual_key_name: Option<String>,
}

impl Gateway {
    /// The address it printed: where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One chat completion with the master key that must answer 200 with
    /// a message: its request id and body.
    pub async fn chat_ok(&self, content: &str) -> (String, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.url()))
            .header("authorization", format!("Bearer {MASTER_KEY}"))
            .header("content-type", "application/json")
            .body(
                json!({
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": content}],
                })
                .to_string(),
            )
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), 200);
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("a request id")
            .to_owned();
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(
            body["choices"][0]["message"]["content"].is_string(),
            "{body}"
        );
        (request_id, body)
    }

    /// `http://IP:PORT` to reach it (loopback when it listens on every
    /// address).
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// Everything it printed on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// See [`Setup::cli`].
    pub async fn cli(&self, args: &[&str]) -> Value {
        self.setup.cli(args).await
    }

    /// The process id, to signal it.
    pub fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_child(self.child.as_ref().expect("still running"))
    }

    /// Sends SIGKILL and waits until the process is gone.
    pub async fn kill(&mut self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::KILL)
            .expect("SIGKILL sent");
        self.wait(Duration::from_secs(10)).await;
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::TERM)
            .expect("SIGTERM sent");
    }

    /// Waits until the process exits, at most `limit`; fails the test if it
    /// does not.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        let waited = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    return Ok(status);
                }
                if started.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("join");
        // The reader thread sees the end of stderr soon after the exit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited.unwrap_or_else(|()| panic!("still running after {limit:?}:\n{}", self.log()))
    }

    /// Every usage row stored so far.
    pub fn usage_rows(&self) -> Vec<UsageRow> {
        let conn = rusqlite::Connection::open_with_flags(
            self.setup.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the database");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        let mut statement = conn
            .prepare(
                "SELECT request_id, route, provider, model, input_tokens, output_tokens, \
                 cost_usd, status, error_kind, attempt, streamed, virtual_key_name \
                 FROM usage_events ORDER BY id",
            )
            .expect("prepare");
        statement
            .query_map([], |row| {
                Ok(UsageRow {
                    request_id: row.get(0)?,
                    route: row.get(1)?,
                    provider: row.get(2)?,
                    model: row.get(3)?,
                    input_tokens: row.get(4)?,
                    output_tokens: row.get(5)?,
                    cost_usd: row.get(6)?,
                    status: row.get(7)?,
                    error_kind: row.get(8)?,
                    attempt: row.get(9)?,
                    streamed: row.get(10)?,
                    virtual_key_name: row.get(11)?,
                })
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// The usage rows of `request_id`, once there are at least `count`
    /// (they are written in batches, off the request path).
    pub async fn usage_of(&self, request_id: &str, count: usize) -> Vec<UsageRow> {
        let started = Instant::now();
        loop {
            let rows: Vec<UsageRow> = self
                .usage_rows()
                .into_iter()
                .filter(|row| row.request_id.as_deref() == Some(request_id))
                .collect();
            if rows.len() >= count {
                return rows;
            }
            assert!(
                started.elapsed() < USAGE_TIMEOUT,
                "{count} usage rows of {request_id} not stored within {USAGE_TIMEOUT:?}: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The interpreter with the official SDKs, installed by
/// `scripts/sdk-clients` once per run, into the build's target directory
/// unless `LLMHOST_SDK_VENV` names another place.
pub fn sdk_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let mut command = Command::new("bash");
        command.arg(repo().join("scripts/sdk-clients"));
        if std::env::var_os("LLMHOST_SDK_VENV").is_none() {
            let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("the target directory");
            command.env("LLMHOST_SDK_VENV", target.join("sdk-venv"));
        }
        let output = command.output().expect("bash runs");
        assert!(
            output.status.success(),
            "scripts/sdk-clients failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
    })
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// One call for [`sdk_calls`]: `sdk` (`openai` or `anthropic`) does `op`
/// (chat, stream, tools, tools-stream, bad-request) with `model` and `key`.
pub fn call(sdk: &str, op: &str, model: &str, key: &str) -> Value {
    json!({"sdk": sdk, "op": op, "model": model, "key": key})
}

/// Runs `calls` one after the other with the official SDKs against the
/// gateway at `url`, and returns what the SDKs made of each: the answer's
/// fields, or the exception's class, status and body.
pub async fn sdk_calls(url: &str, calls: Vec<Value>) -> Vec<Value> {
    let url = url.to_owned();
    let count = calls.len();
    let results = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(sdk_python())
            .arg(repo().join("tests/sdk_clients/gateway.py"))
            .arg(&url)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(Value::from(calls).to_string().as_bytes())
            .expect("calls written");
        let output = child.wait_with_output().expect("python ends");
        assert!(
            output.status.success(),
            "gateway.py: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&output.stdout).expect("a JSON list")
    })
    .await
    .expect("join");
    assert_eq!(results.len(), count, "one result per call");
    results
}
