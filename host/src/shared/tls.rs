//! The Redis client for a `[shared] redis_url`: plain TCP for `redis://`,
//! TLS by rustls (ring provider) for `rediss://`. A TLS server's
//! certificate is verified against the public roots, plus the CA
//! certificates of `[shared] redis_ca_file` when it is set; nothing accepts
//! an unverified certificate.

use crate::error::Error;
use base64::Engine as _;
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;

/// The client of `url` (shown as `shown`, its password redacted).
pub(super) fn client(
    url: &str,
    shown: &str,
    ca_file: Option<&Path>,
) -> Result<redis::Client, Error> {
    // rustls takes its crypto from the process's default provider: make it
    // ring, as for the providers' HTTPS, whatever other crates enable.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let info = url.into_connection_info().map_err(|err| {
        Error::InvalidConfig(format!(
            "[shared] redis_url `{shown}` is not a Redis URL: {}",
            err.detail().unwrap_or("it does not parse")
        ))
    })?;
    let tls = match info.addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(Error::InvalidConfig(format!(
                "[shared] redis_url `{shown}` ends in `#insecure`, which would accept any \
                 certificate: llmhost always verifies Redis's certificate; to trust a private \
                 CA, name its PEM file in [shared] redis_ca_file ({}) and drop `#insecure`",
                super::REDIS_CA_FILE_ENV
            )));
        }
        ConnectionAddr::TcpTls { .. } => true,
        _ => false,
    };
    let Some(ca_file) = ca_file else {
        return redis::Client::open(info)
            .map_err(|err| Error::InvalidConfig(format!("[shared] redis_url `{shown}`: {err}")));
    };
    if !tls {
        return Err(Error::InvalidConfig(format!(
            "[shared] redis_ca_file `{}` is set, but redis_url `{shown}` does not use TLS: \
             write it as rediss://",
            ca_file.display()
        )));
    }
    let mut roots = public_roots_pem();
    roots.push_str(&ca_certificates_pem(ca_file)?);
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(roots.into_bytes()),
        },
    )
    .map_err(|err| {
        Error::InvalidConfig(format!(
            "[shared] redis_ca_file `{}`: {err}",
            ca_file.display()
        ))
    })
}

/// The CA certificates of `path`, checked and written out again as PEM.
fn ca_certificates_pem(path: &Path) -> Result<String, Error> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|err| {
        Error::InvalidConfig(format!(
            "[shared] redis_ca_file `{shown}` cannot be read: {err}"
        ))
    })?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            Error::InvalidConfig(format!(
                "[shared] redis_ca_file `{shown}` is not PEM certificates: {err}"
            ))
        })?;
    if certificates.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "[shared] redis_ca_file `{shown}` holds no certificate \
             (expected PEM blocks of `-----BEGIN CERTIFICATE-----`)"
        )));
    }
    let mut store = rustls::RootCertStore::empty();
    for certificate in &certificates {
        store.add(certificate.clone()).map_err(|err| {
            Error::InvalidConfig(format!(
                "[shared] redis_ca_file `{shown}` has a certificate that cannot be a CA: {err}"
            ))
        })?;
    }
    Ok(certificates.iter().map(|der| pem(der)).collect())
}

/// webpki's public roots (Mozilla's) as PEM: the redis crate takes the
/// roots of a client with a CA file as one PEM bundle, which replaces its
/// own, so the public ones come along.
fn public_roots_pem() -> String {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| pem(der))
        .collect()
}

fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The text of a failed operation; a certificate Redis showed and that is
/// not trusted is said so, with what to do.
pub(super) fn explain(err: &redis::RedisError) -> String {
    match certificate_error(err) {
        Some(why) => format!(
            "Redis's TLS certificate is not trusted ({why}): it must chain to a public root or \
             to a CA in [shared] redis_ca_file ({}), and name the host of redis_url",
            super::REDIS_CA_FILE_ENV
        ),
        None => err.to_string(),
    }
}

/// The certificate error among the causes of `err`, if one is.
fn certificate_error(err: &redis::RedisError) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(rustls::Error::InvalidCertificate(why)) = current.downcast_ref() {
            return Some(format!("{why:?}"));
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(rustls::Error::InvalidCertificate(why)) =
                io.get_ref().and_then(|inner| inner.downcast_ref())
        {
            return Some(format!("{why:?}"));
        }
        cause = current.source();
    }
    // Some paths keep only the text.
    let text = err.to_string();
    text.contains("invalid peer certificate").then(|| {
        text.split("invalid peer certificate: ")
            .nth(1)
            .unwrap_or("invalid")
            .to_owned()
    })
}
