//! TLS to PostgreSQL: the URL's `sslmode` and `sslrootcert`, read before
//! the driver parses the URL, and a rustls connector (the ring provider,
//! as for HTTPS) under rust-postgres.
//!
//! Modes, as libpq names them:
//! - `disable`: plain TCP.
//! - `prefer` (the default): TLS when the server offers it, plain TCP when
//!   it does not.
//! - `require`, `verify-ca`, `verify-full`: TLS or no connection.
//!
//! Whenever TLS is used the server's certificate is verified, chain and
//! host name, against the public roots of `webpki-roots` plus the
//! operator's CA file (`sslrootcert=` in the URL, else the
//! `database_ca_file` setting). So every TLS mode checks what libpq's
//! `verify-full` checks; there is no mode that accepts any certificate.

use super::database::PostgresUrl;
use crate::error::Error;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The URL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The driver's mode: it knows no `verify-*`, which are `require`
    /// with the verification rustls always does.
    fn driver(self) -> postgres::config::SslMode {
        match self {
            Self::Disable => postgres::config::SslMode::Disable,
            Self::Prefer => postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => postgres::config::SslMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the CA certificates besides the public roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The public roots only.
    Public,
    /// The public roots and the CA certificates of this PEM file.
    File {
        path: PathBuf,
        /// `sslrootcert=` in the URL, else the setting.
        from_url: bool,
    },
}

/// The connection parameters llmhost reads itself, and the URL without
/// them for the driver.
#[derive(Debug)]
struct Split {
    /// The URL without `sslmode` and `sslrootcert` (the password still in).
    driver_url: String,
    mode: SslMode,
    /// `sslrootcert=`: `None` when absent, `Some(None)` for `system`.
    root_cert: Option<Option<PathBuf>>,
}

/// Parameters of libpq's that would need a client certificate.
const CLIENT_CERT_PARAMS: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query. The query
/// starts at the first `?` after the user info (which ends at the first
/// `@`), as the driver's parser has it.
fn split(url: &str, label: &str) -> Result<Split, Error> {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let after_creds = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |at| after_scheme + at + 1);
    let Some(q) = url[after_creds..].find('?').map(|at| after_creds + at) else {
        return Ok(Split {
            driver_url: url.to_owned(),
            mode: SslMode::Prefer,
            root_cert: None,
        });
    };
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for part in url[q + 1..].split('&').filter(|part| !part.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = decode(key);
        match key.as_str() {
            "sslmode" => {
                let value = decode(value);
                mode = match SslMode::parse(&value) {
                    Some(mode) => mode,
                    None => {
                        return Err(Error::InvalidConfig(format!(
                            "database {label}: sslmode `{value}` is not one llmhost knows: use disable, prefer, require, verify-ca or verify-full"
                        )));
                    }
                };
            }
            "sslrootcert" => {
                let value = decode(value);
                root_cert = Some(match value.as_str() {
                    "" => {
                        return Err(Error::InvalidConfig(format!(
                            "database {label}: sslrootcert is empty: give the path of a PEM file of CA certificates, or `system` for the public roots only"
                        )));
                    }
                    "system" => None,
                    path => Some(PathBuf::from(path)),
                });
            }
            key if CLIENT_CERT_PARAMS.contains(&key) => {
                return Err(Error::InvalidConfig(format!(
                    "database {label}: `{key}` is not supported: llmhost does not log in with a client certificate; use a password (or another server-side method) and sslmode=require"
                )));
            }
            _ => kept.push(part),
        }
    }
    let mut driver_url = url[..q].to_owned();
    if !kept.is_empty() {
        driver_url.push('?');
        driver_url.push_str(&kept.join("&"));
    }
    Ok(Split {
        driver_url,
        mode,
        root_cert,
    })
}

/// Opens connections to one database, with TLS as its URL asks.
pub(crate) struct Connector {
    config: postgres::Config,
    mode: SslMode,
    roots: Roots,
    /// `None` under `disable`.
    tls: Option<MakeRustlsConnect>,
}

impl fmt::Debug for Connector {
    // The driver's `Config` shows its password as `_`; the rest is ours.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Reads `url` (its TLS parameters, then the rest with the driver's
    /// parser) and, unless TLS is off, the CA file.
    pub(crate) fn new(url: &PostgresUrl, label: &str) -> Result<Self, Error> {
        let split = split(url.secret_url(), label)?;
        let mut config = postgres::Config::from_str(&split.driver_url).map_err(|err| {
            Error::InvalidConfig(format!("database {label}: not a PostgreSQL URL: {err}"))
        })?;
        config.ssl_mode(split.mode.driver());
        let roots = match split.root_cert {
            Some(Some(path)) => Roots::File {
                path,
                from_url: true,
            },
            Some(None) => Roots::Public,
            None => match url.ca_file() {
                Some(path) => Roots::File {
                    path: path.to_path_buf(),
                    from_url: false,
                },
                None => Roots::Public,
            },
        };
        let tls = match split.mode {
            SslMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(&roots, label)?)),
        };
        Ok(Self {
            config,
            mode: split.mode,
            roots,
            tls,
        })
    }

    /// The driver's configuration, to set defaults on.
    pub(crate) fn config_mut(&mut self) -> &mut postgres::Config {
        &mut self.config
    }

    /// One connection.
    pub(crate) fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }

    /// Why a connection failed, and what to do about it when it is about
    /// TLS. The driver's errors never hold the password.
    pub(crate) fn explain(&self, err: &postgres::Error) -> String {
        let text = describe(err);
        if let Some(tls) = rustls_error(err) {
            return match tls {
                rustls::Error::InvalidCertificate(cert) => self.explain_certificate(cert),
                other => format!("the TLS handshake failed: {other}{}", self.fallback_hint()),
            };
        }
        if text.contains("server does not support TLS") {
            return format!(
                "the server does not offer TLS and sslmode={} needs it: turn on ssl in the server's settings, or, for a server on a trusted network only, connect with sslmode=prefer or sslmode=disable",
                self.mode
            );
        }
        if self.tls.is_none() && text.contains("no encryption") {
            return format!(
                "{text} (the server accepts only TLS connections: connect with sslmode=require, not sslmode=disable)"
            );
        }
        text
    }

    fn explain_certificate(&self, err: &rustls::CertificateError) -> String {
        use rustls::CertificateError as C;
        let trusted = match &self.roots {
            Roots::Public => "the public roots (no CA file given)".to_owned(),
            Roots::File { path, from_url } => format!(
                "the public roots and {} ({})",
                path.display(),
                if *from_url {
                    "sslrootcert in the URL"
                } else {
                    "the database_ca_file setting"
                }
            ),
        };
        let what = match err {
            C::UnknownIssuer | C::BadSignature => format!(
                "the server's TLS certificate is not signed by a trusted CA ({err}; trusted: {trusted}): give the PEM file of the CA that signed it with the database_ca_file setting (LLMHOST_DB_CA_FILE, --db-ca-file) or sslrootcert= in the URL (for Amazon RDS, the certificate bundle of the database's region)"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's TLS certificate does not name the host connected to ({err}): connect with a host name the certificate names (for a managed database, its endpoint name, not an IP address)"
            ),
            _ => format!("the server's TLS certificate is refused: {err} (trusted: {trusted})"),
        };
        format!("{what}{}", self.fallback_hint())
    }

    fn fallback_hint(&self) -> &'static str {
        match self.mode {
            SslMode::Prefer => {
                "; the server offered TLS under sslmode=prefer, which llmhost verifies like any TLS"
            }
            _ => "",
        }
    }
}

/// The server's message, or the driver's with its sources (the driver
/// shows only the outermost, `error performing TLS handshake`, itself).
fn describe(err: &postgres::Error) -> String {
    if err.as_db_error().is_some() {
        return super::sql::from_postgres(err).to_string();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(current) = source {
        let more = current.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = current.source();
    }
    text
}

/// The rustls error somewhere in `err`'s sources, if any.
fn rustls_error(err: &postgres::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(current) = source {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An `io::Error`'s `source` skips the error it wraps.
        if let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        source = current.source();
    }
    None
}

/// The rustls configuration: ring, TLS 1.2 and 1.3, the public roots and
/// the CA file's certificates, no client certificate.
fn client_config(roots: &Roots, label: &str) -> Result<rustls::ClientConfig, Error> {
    let mut store = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Roots::File { path, from_url } = roots {
        for cert in read_ca_file(path, *from_url, label)? {
            store.add(cert).map_err(|err| {
                Error::InvalidConfig(format!(
                    "database {label}: CA file {}: a certificate is not usable as a root: {err}",
                    path.display()
                ))
            })?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| Error::Internal(format!("TLS set-up for the database: {err}")))?
    .with_root_certificates(store)
    .with_no_client_auth();
    // PostgreSQL 17's direct TLS needs it; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn read_ca_file(
    path: &Path,
    from_url: bool,
    label: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let named_by = if from_url {
        "named by sslrootcert in the URL"
    } else {
        "named by database_ca_file, LLMHOST_DB_CA_FILE or --db-ca-file"
    };
    let fail = |why: String| {
        Error::InvalidConfig(format!(
            "database {label}: CA file {} ({named_by}): {why}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|err| {
        fail(format!(
            "cannot read it: {err}; give the path of a readable PEM file of the CA certificates that sign the server's certificate"
        ))
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(format!("not a PEM file of certificates: {err}")))?;
    if certs.is_empty() {
        return Err(fail(
            "holds no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)".to_owned(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Database;

    fn url(text: &str) -> PostgresUrl {
        match Database::parse(text) {
            Database::Postgres(url) => url,
            Database::Sqlite(_) => panic!("{text} is a URL"),
        }
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept() {
        let s = split(
            "postgres://u:p%3Fw@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
            "db",
        )
        .unwrap();
        assert_eq!(
            s.driver_url,
            "postgres://u:p%3Fw@h:5432/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert, Some(Some(PathBuf::from("/etc/ca.pem"))));

        let s = split("postgres://h/db?sslmode=require", "db").unwrap();
        assert_eq!(s.driver_url, "postgres://h/db");
        assert_eq!(s.mode, SslMode::Require);
        assert_eq!(s.root_cert, None);

        let s = split("postgres://h/db?sslrootcert=system", "db").unwrap();
        assert_eq!((s.mode, s.root_cert), (SslMode::Prefer, Some(None)));

        // A `?` in the password is not the query's start.
        let s = split("postgres://u:a?b@h/db", "db").unwrap();
        assert_eq!(
            (s.driver_url.as_str(), s.mode),
            ("postgres://u:a?b@h/db", SslMode::Prefer)
        );
    }

    #[test]
    fn bad_tls_parameters_are_refused_by_name() {
        for (text, says) in [
            ("postgres://h/db?sslmode=allow", "sslmode `allow`"),
            ("postgres://h/db?sslmode=", "sslmode ``"),
            ("postgres://h/db?sslrootcert=", "sslrootcert is empty"),
            (
                "postgres://h/db?sslcert=/c.pem",
                "`sslcert` is not supported",
            ),
            ("postgres://h/db?sslkey=/k.pem", "`sslkey` is not supported"),
        ] {
            let err = Connector::new(&url(text), "db").unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::InvalidConfig);
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_modes_reach_the_driver() {
        for (mode, driver) in [
            ("disable", postgres::config::SslMode::Disable),
            ("prefer", postgres::config::SslMode::Prefer),
            ("require", postgres::config::SslMode::Require),
            ("verify-ca", postgres::config::SslMode::Require),
            ("verify-full", postgres::config::SslMode::Require),
        ] {
            let connector =
                Connector::new(&url(&format!("postgres://h/db?sslmode={mode}")), "db").unwrap();
            assert_eq!(connector.mode.as_str(), mode);
            assert_eq!(connector.config.get_ssl_mode(), driver);
            assert_eq!(connector.tls.is_none(), mode == "disable");
        }
        let default = Connector::new(&url("postgres://h/db"), "db").unwrap();
        assert_eq!(default.mode, SslMode::Prefer);
    }

    #[test]
    fn a_missing_or_wrong_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Connector::new(
            &url(&format!(
                "postgres://u:S3cret@h/db?sslmode=require&sslrootcert={}",
                missing.display()
            )),
            "db",
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidConfig);
        let text = err.to_string();
        assert!(text.contains("cannot read it"), "{text}");
        assert!(text.contains("sslrootcert"), "{text}");
        assert!(!text.contains("S3cret"), "{text}");

        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "just text\n").unwrap();
        let mut setting = url("postgres://h/db?sslmode=require");
        setting.set_ca_file(Some(not_pem.clone()));
        let err = Connector::new(&setting, "db").unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        assert!(err.to_string().contains("database_ca_file"), "{err}");

        // Not read when TLS is off.
        let mut off = url("postgres://h/db?sslmode=disable");
        off.set_ca_file(Some(missing));
        Connector::new(&off, "db").unwrap();
    }
}
