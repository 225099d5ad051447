//! Real PostgreSQL 15 and Redis 7 servers for tests, run by
//! `scripts/services` from Debian's packages (installed on first use) in
//! temporary directories on loopback ports.
//!
//! [`postgres()`] is one server per test process, shared by its tests:
//! each test takes a database of its own with [`Postgres::database`].
//! [`postgres_tls()`] is another that takes TLS connections only, with a
//! certificate of a throwaway CA ([`Postgres::ca_file`]).
//! [`redis()`] starts a server for one test, which can stop and start it;
//! [`redis_tls()`] one that speaks TLS alone, with a certificate from a
//! throwaway CA ([`Service::ca_file`]).
//! A server goes when its handle is dropped, or with the test process
//! however that ends: the script stops it once its stdin closes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The repository's `scripts/services`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services")
}

/// A server run by `scripts/services`.
pub struct Service {
    kind: &'static str,
    port: u16,
    url: String,
    /// The CA of a TLS server's certificate (`postgres-tls`, `redis-tls`).
    ca_file: Option<PathBuf>,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Service {
    /// Starts a server of `kind` (`postgres`, `postgres-tls`, `redis` or
    /// `redis-tls`) on a free
    /// loopback port. Panics with the script's reason when it cannot.
    pub fn start(kind: &'static str) -> Self {
        let mut last = String::new();
        // A free port can be taken by another test between the check and
        // the server's bind: try a few.
        for _ in 0..5 {
            match Self::try_start(kind) {
                Ok(service) => return service,
                Err(why) => last = why,
            }
        }
        panic!("cannot start {kind} with scripts/services: {last}");
    }

    fn try_start(kind: &'static str) -> Result<Self, String> {
        let port = free_port();
        let mut child = Command::new(script())
            .arg(kind)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", script().display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut service = Self {
            kind,
            port,
            url: String::new(),
            ca_file: None,
            child,
            stdin,
            stdout,
        };
        if kind.ends_with("-tls") {
            service.ca_file = Some(PathBuf::from(service.expect("ca")?));
        }
        service.url = service.expect("ready")?;
        Ok(service)
    }

    /// Reads the script's next line; `Ok(rest)` when it starts with `word`.
    fn expect(&mut self, word: &str) -> Result<String, String> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|err| format!("reading scripts/services: {err}"))?;
        if read == 0 {
            let status = self.child.wait().map_err(|err| err.to_string())?;
            return Err(format!("scripts/services {} exited ({status})", self.kind));
        }
        let line = line.trim_end();
        match line.split_once(' ') {
            Some((first, rest)) if first == word => Ok(rest.to_owned()),
            None if line == word => Ok(String::new()),
            _ => Err(line.to_owned()),
        }
    }

    fn command(&mut self, command: &str, answer: &str) {
        let stdin = self.stdin.as_mut().expect("server running");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|err| panic!("scripts/services {}: {err}", self.kind));
        if let Err(why) = self.expect(answer) {
            panic!("scripts/services {} {command}: {why}", self.kind);
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed a TLS server's certificate
    /// (`postgres-tls`, `redis-tls`); it goes with the server.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Stops the server; its data stays for [`Service::resume`].
    pub fn stop(&mut self) {
        self.command("stop", "stopped");
    }

    /// Starts the stopped server again on the same port.
    pub fn resume(&mut self) {
        self.command("start", "ready");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The end of stdin tells the script to stop the server and remove
        // its directory.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A Redis 7 server for one test.
pub fn redis() -> Service {
    Service::start("redis")
}

/// A Redis 7 server for one test that speaks TLS alone (`rediss://`), its
/// certificate, for `127.0.0.1` and `localhost`, signed by a CA made for it
/// ([`Service::ca_file`]).
pub fn redis_tls() -> Service {
    Service::start("redis-tls")
}

/// The PostgreSQL 15 server of this test process.
pub struct Postgres {
    service: Mutex<Service>,
    port: u16,
    ca_file: Option<PathBuf>,
    databases: AtomicU32,
}

/// The PostgreSQL server shared by this process's tests, started on
/// first use.
pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| Postgres::start("postgres"))
}

/// A second PostgreSQL server shared by this process's tests that takes
/// TCP connections over TLS only (`ssl=on`, `hostssl` lines alone, as a
/// managed database that forces SSL), with a certificate for `localhost`
/// and `127.0.0.1` signed by a throwaway CA: [`Postgres::ca_file`].
/// [`Postgres::database`] gives URLs without TLS parameters; a test adds
/// the `sslmode` (and `sslrootcert`) it tries.
pub fn postgres_tls() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| Postgres::start("postgres-tls"))
}

impl Postgres {
    fn start(kind: &'static str) -> Self {
        let service = Service::start(kind);
        Self {
            port: service.port(),
            ca_file: service.ca_file().map(Path::to_path_buf),
            service: Mutex::new(service),
            databases: AtomicU32::new(0),
        }
    }

    /// The PEM file of the CA of the server's certificate
    /// ([`postgres_tls()`] only).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        self.service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .url()
            .to_owned()
    }

    /// Creates an empty database of its own for one test and returns its
    /// URL.
    pub fn database(&self) -> String {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        let bin = std::env::var("LLMHOST_PG_BIN")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
        // libpq's default `sslmode=prefer` takes TLS where the server
        // offers it.
        let output = Command::new(PathBuf::from(bin).join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "llmhost", &name])
            .output()
            .unwrap_or_else(|err| panic!("cannot run createdb: {err}"));
        assert!(
            output.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        format!("postgres://llmhost@127.0.0.1:{}/{name}", self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    fn redis_ping(port: u16) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    #[test]
    fn redis_answers_stops_resumes_and_goes_with_its_handle() {
        let mut server = redis();
        let port = server.port();
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(redis_ping(port).unwrap(), "+PONG\r\n");
        server.stop();
        assert!(redis_ping(port).is_err(), "a stopped server still answers");
        server.resume();
        assert_eq!(redis_ping(port).unwrap(), "+PONG\r\n");
        drop(server);
        assert!(redis_ping(port).is_err(), "a dropped server still answers");
    }

    #[test]
    fn redis_tls_gives_a_tls_url_and_its_ca_and_refuses_plain_text() {
        let server = redis_tls();
        let port = server.port();
        assert_eq!(server.url(), format!("rediss://127.0.0.1:{port}"));
        let ca = std::fs::read_to_string(server.ca_file().expect("a CA file")).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        // A plain-text PING gets no PONG from a TLS port.
        assert!(!matches!(redis_ping(port).as_deref(), Ok("+PONG\r\n")));
        let dir = server.ca_file().unwrap().parent().unwrap().to_owned();
        drop(server);
        assert!(!dir.exists(), "the CA's directory stays after the server");
    }

    #[test]
    fn postgres_gives_each_test_a_database_of_its_own() {
        let server = postgres();
        let one = server.database();
        let two = server.database();
        assert_ne!(one, two);
        assert!(TcpStream::connect(("127.0.0.1", server.port)).is_ok());
        assert!(server.ca_file().is_none());
    }

    #[test]
    fn postgres_tls_names_its_ca_and_takes_databases_too() {
        let server = postgres_tls();
        let ca = std::fs::read_to_string(server.ca_file().expect("a CA file")).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let one = server.database();
        assert!(one.starts_with(&format!("postgres://llmhost@127.0.0.1:{}/", server.port())));
        assert_ne!(server.port(), postgres().port());
    }
}
