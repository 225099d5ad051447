//! Where the store lives: a SQLite file or a PostgreSQL URL, as the
//! `database` setting names it. A URL's password never leaves this type:
//! `Display` and `Debug` show it as `***`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Connections a PostgreSQL store keeps open at most, unless configured.
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// The `database` setting: a `postgres://` or `postgresql://` URL, else a
/// SQLite file path.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL, the size of the pool opened on it and the
/// CA file its server's TLS certificate is checked with (besides the
/// public roots; `sslrootcert=` in the URL wins over it).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    pub pool_size: u32,
    ca_file: Option<PathBuf>,
}

impl PostgresUrl {
    /// The URL with its password, for connecting only.
    pub(crate) fn secret_url(&self) -> &str {
        &self.url
    }

    /// The `database_ca_file` setting: a PEM file of CA certificates.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    pub fn set_ca_file(&mut self, path: Option<PathBuf>) {
        self.ca_file = path;
    }
}

impl Database {
    /// Reads the setting: a URL of scheme `postgres` or `postgresql` is
    /// PostgreSQL, anything else a file path.
    pub fn parse(text: &str) -> Self {
        if is_postgres_url(text) {
            Self::Postgres(PostgresUrl {
                url: text.to_owned(),
                pool_size: DEFAULT_POOL_SIZE,
                ca_file: None,
            })
        } else {
            Self::Sqlite(PathBuf::from(text))
        }
    }

    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Sets the PostgreSQL pool size (no effect on SQLite).
    pub fn set_pool_size(&mut self, size: u32) {
        if let Self::Postgres(url) = self {
            url.pool_size = size;
        }
    }

    /// Sets the CA file of a PostgreSQL server's TLS certificate (no
    /// effect on SQLite).
    pub fn set_ca_file(&mut self, path: Option<PathBuf>) {
        if let Self::Postgres(url) = self {
            url.set_ca_file(path);
        }
    }
}

fn is_postgres_url(text: &str) -> bool {
    let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with the password of its user info and of a `password=` query
/// parameter replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..rest_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let query = &tail[q + 1..];
            let (query, fragment) = match query.find('#') {
                Some(h) => (&query[..h], &query[h..]),
                None => (query, ""),
            };
            let parts: Vec<String> = query
                .split('&')
                .map(|part| match part.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => part.to_owned(),
                })
                .collect();
            out.push_str(&parts.join("&"));
            out.push_str(fragment);
        }
        None => out.push_str(tail),
    }
    out
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => fmt::Display::fmt(url, f),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.url))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl From<&str> for Database {
    fn from(text: &str) -> Self {
        Self::parse(text)
    }
}

impl From<String> for Database {
    fn from(text: String) -> Self {
        Self::parse(&text)
    }
}

impl From<&String> for Database {
    fn from(text: &String) -> Self {
        Self::parse(text)
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        match path.to_str() {
            Some(text) if is_postgres_url(text) => Self::parse(text),
            _ => Self::Sqlite(path),
        }
    }
}

impl From<&PathBuf> for Database {
    fn from(path: &PathBuf) -> Self {
        path.clone().into()
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Self {
        path.to_path_buf().into()
    }
}

impl From<&Database> for Database {
    fn from(database: &Database) -> Self {
        database.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_postgres_and_the_rest_are_files() {
        assert!(Database::parse("postgres://h/db").is_postgres());
        assert!(Database::parse("PostgreSQL://u@h:5432/db").is_postgres());
        assert_eq!(
            Database::parse("data/llmhost.db").sqlite_path(),
            Some(Path::new("data/llmhost.db"))
        );
        assert!(!Database::parse("postgres.db").is_postgres());
    }

    #[test]
    fn passwords_never_show() {
        let secret = "S3cret-pa55";
        for url in [
            format!("postgres://llmhost:{secret}@db.example:5432/llmhost"),
            format!("postgresql://u:{secret}@h/db?sslmode=disable&password={secret}"),
            format!("postgres://h/db?password={secret}#x"),
        ] {
            let db = Database::parse(&url);
            let shown = [
                db.to_string(),
                format!("{db:?}"),
                format!("{:?}", Some(db.clone())),
            ];
            for text in shown {
                assert!(!text.contains(secret), "{text}");
                assert!(text.contains("***"), "{text}");
            }
        }
        assert_eq!(
            redact_url("postgres://llmhost:pw@127.0.0.1:5432/x"),
            "postgres://llmhost:***@127.0.0.1:5432/x"
        );
        assert_eq!(
            redact_url("postgres://llmhost@127.0.0.1/x"),
            "postgres://llmhost@127.0.0.1/x"
        );
    }
}
