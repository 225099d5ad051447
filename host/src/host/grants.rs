//! Grants, not claims: what a plugin asks for, what the operator granted
//! when installing it, and what it gets at run time (the intersection).
//!
//! A plugin's manifest (`provider-info`) names the hosts it wants to reach
//! and the environment variables its key and base URL may come from.
//! Nothing it names is trusted on its own:
//!
//! - **Built-in providers** are trusted as shipped: they get the hosts and
//!   variables their manifest names.
//! - **A third-party plugin** gets only what `llmhost plugins install`
//!   recorded for it ([`InstallRecord`], `NAME.toml` beside `NAME.wasm`),
//!   intersected with what it asks. Its own variables
//!   `LLMHOST_<ID>_API_KEY` and `LLMHOST_<ID>_BASE_URL` are granted by
//!   default; any other variable only by name. llmhost's own secrets are
//!   never grantable. The record is bound to the file's BLAKE3 hash: a
//!   changed file is refused until it is approved again.
//! - **A plugin file without a record** loads (so it can be listed and
//!   inspected) but reaches nothing and reads nothing.

use crate::error::Error;
use crate::settings::ProviderSettings;
use crate::types::ProviderInfo;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The variable a third-party plugin's key comes from by default.
pub fn own_key_env(id: &str) -> String {
    format!("LLMHOST_{}_API_KEY", env_id(id))
}

/// The variable a third-party plugin's base URL comes from by default.
pub fn own_base_url_env(id: &str) -> String {
    format!("LLMHOST_{}_BASE_URL", env_id(id))
}

fn env_id(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            '0'..='9' => c,
            _ => '_',
        })
        .collect()
}

/// Why an environment variable can never be granted to plugin `id`, if
/// it cannot.
pub fn env_never_grantable(id: &str, name: &str) -> Option<&'static str> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Some("not an environment variable name (A-Z, 0-9 and _)");
    }
    if name == own_key_env(id) || name == own_base_url_env(id) {
        return None;
    }
    if name.starts_with("LLMHOST_") || name == crate::secrets::KEY_ENV_ALT {
        return Some("llmhost's own setting or secret");
    }
    None
}

/// Why a host can never be granted, if it cannot: not a host name, or an
/// address literal outside the public internet (the gate resolves names
/// to public addresses only, and a literal must meet the same rule).
pub fn host_never_grantable(host: &str) -> Option<String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return (!crate::runtime::is_public(ip))
            .then(|| "an address outside the public internet".to_owned());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    (!valid).then(|| "not a host name such as api.example.com".to_owned())
}

/// An environment variable a plugin asks for, and whether it can have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AskedEnv {
    pub name: String,
    /// `own` (granted by default), `by_name` (granted only with
    /// `--allow-env NAME`) or `never`.
    pub status: &'static str,
    /// Why, when it is not `own`: whose variable it is, or why it is
    /// never granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A host a plugin asks for, and whether it can be granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AskedHost {
    pub host: String,
    /// Why it can never be granted, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Everything a plugin's manifest asks for, judged against the rules, for
/// the operator to review (`plugins inspect`, `plugins install`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asks {
    pub hosts: Vec<AskedHost>,
    pub key_env: Vec<AskedEnv>,
    pub base_url_env: Vec<AskedEnv>,
    /// Whether the plugin would see the API key: every contract 0.1
    /// plugin (it sends its requests itself), and a 0.2 plugin whose auth
    /// scheme is `plugin-signs`. Installed only with the key granted
    /// (`--allow-key`); every other 0.2 plugin never sees it: the host
    /// adds it to requests at send time.
    pub sees_key: bool,
    /// The built-in provider it would replace, if its id is a built-in's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces_builtin: Option<String>,
}

impl Asks {
    /// What `info` asks for; `builtin_env` lists each built-in provider's
    /// key variables, to say whose a variable is.
    pub fn of(info: &ProviderInfo, builtin_env: &[(String, Vec<String>)]) -> Self {
        let judge = |name: &String| {
            let (status, note) = if let Some(why) = env_never_grantable(&info.id, name) {
                ("never", Some(why.to_owned()))
            } else if *name == own_key_env(&info.id) || *name == own_base_url_env(&info.id) {
                ("own", None)
            } else {
                let owner = builtin_env
                    .iter()
                    .find(|(_, vars)| vars.contains(name))
                    .map(|(id, _)| format!("the key of the built-in provider `{id}`"));
                ("by_name", owner)
            };
            AskedEnv {
                name: name.clone(),
                status,
                note,
            }
        };
        Self {
            hosts: info
                .hosts
                .iter()
                .map(|host| AskedHost {
                    host: host.clone(),
                    refused: host_never_grantable(host),
                })
                .collect(),
            key_env: info.api_key_env.iter().map(judge).collect(),
            base_url_env: info.base_url_env.iter().map(judge).collect(),
            sees_key: info.auth.plugin_sees_key(),
            replaces_builtin: builtin_env
                .iter()
                .any(|(id, _)| *id == info.id)
                .then(|| info.id.clone()),
        }
    }

    /// The hosts that can be granted.
    pub fn grantable_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| h.refused.is_none())
            .map(|h| h.host.clone())
            .collect()
    }

    fn asks_env(&self, name: &str) -> Option<&AskedEnv> {
        self.key_env
            .iter()
            .chain(&self.base_url_env)
            .find(|e| e.name == name)
    }
}

/// What the operator grants a plugin at install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Hosts it may reach: each must be one it asks for.
    pub hosts: Vec<String>,
    /// Environment variables beyond its own `LLMHOST_<ID>_*`: each must be
    /// one it asks for, and grantable.
    pub env: Vec<String>,
    /// Serve it instead of the built-in provider with the same id.
    pub replace_builtin: bool,
    /// Let it see the API key (a contract 0.2 plugin that signs its own
    /// requests asks for this).
    pub key: bool,
    /// Overwrite an installed plugin with the same id.
    pub force: bool,
}

impl Grant {
    /// Checks the grant against what the plugin asks for.
    pub fn check(&self, asks: &Asks) -> Result<(), Error> {
        for host in &self.hosts {
            let asked = asks
                .hosts
                .iter()
                .find(|h| h.host.eq_ignore_ascii_case(host));
            match asked {
                None => {
                    return Err(Error::InvalidConfig(format!(
                        "the plugin does not ask for host `{}`: a plugin reaches only hosts it declares and you grant",
                        printable(host)
                    )));
                }
                Some(AskedHost {
                    refused: Some(why), ..
                }) => {
                    return Err(Error::InvalidConfig(format!(
                        "host `{}` cannot be granted: {why}",
                        printable(host)
                    )));
                }
                Some(_) => {}
            }
        }
        for name in &self.env {
            match asks.asks_env(name) {
                None => {
                    return Err(Error::InvalidConfig(format!(
                        "the plugin does not ask for the environment variable `{}`",
                        printable(name)
                    )));
                }
                Some(AskedEnv {
                    status: "never",
                    note,
                    ..
                }) => {
                    return Err(Error::InvalidConfig(format!(
                        "`{}` is never granted to a plugin: {}",
                        printable(name),
                        note.as_deref().unwrap_or("refused")
                    )));
                }
                Some(_) => {}
            }
        }
        if asks.sees_key && !self.key {
            return Err(Error::InvalidConfig(
                "the plugin handles the API key itself (contract 0.1, or a 0.2 plugin that signs its requests): the key would enter its memory; grant that explicitly with --allow-key, or use a plugin the host authenticates for".into(),
            ));
        }
        if !asks.sees_key && self.key {
            return Err(Error::InvalidConfig(
                "the plugin does not ask to see the API key (the host adds it to its requests): --allow-key grants nothing here".into(),
            ));
        }
        if let Some(id) = &asks.replaces_builtin
            && !self.replace_builtin
        {
            return Err(Error::Conflict(format!(
                "`{id}` is a built-in provider: pass --replace to serve this plugin instead of it"
            )));
        }
        Ok(())
    }
}

/// What `llmhost plugins install` records beside a component
/// (`NAME.toml` next to `NAME.wasm`): the operator's grant, bound to the
/// file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRecord {
    /// The provider id the grant was given to.
    pub provider: String,
    /// BLAKE3 of the component file, hex: a changed file is refused.
    pub blake3: String,
    /// Hosts granted (each one it asked for).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Environment variables granted beyond its own `LLMHOST_<ID>_*`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether it may replace the built-in provider with its id.
    #[serde(default)]
    pub replaces_builtin: bool,
    /// Whether it may see the API key (a contract 0.2 plugin that signs
    /// its own requests).
    #[serde(default)]
    pub key: bool,
}

impl InstallRecord {
    /// The record file of the component at `wasm`.
    pub fn path_for(wasm: &Path) -> PathBuf {
        wasm.with_extension("toml")
    }

    /// The record beside `wasm`, `None` when there is none.
    pub fn read_for(wasm: &Path) -> Result<Option<Self>, Error> {
        let path = Self::path_for(wasm);
        let load_error = |message: String| Error::PluginLoad {
            path: path.clone(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(load_error(err.to_string())),
        };
        toml::from_str(&text).map(Some).map_err(|err| {
            load_error(format!(
                "not an install record of this llmhost ({}); install the plugin again",
                err.message()
            ))
        })
    }

    /// The record as the file holds it.
    pub fn to_toml(&self) -> Result<String, Error> {
        let body = toml::to_string(self)
            .map_err(|err| Error::Internal(format!("cannot write an install record: {err}")))?;
        Ok(format!(
            "# Written by `llmhost plugins install`: what the operator granted this plugin.\n\
             # Bound to the file's content; a changed file must be installed again.\n{body}"
        ))
    }
}

/// BLAKE3 of a component file, as an install record holds it.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Where a plugin's base URL may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrlVar {
    pub name: String,
    /// Whether a URL from this variable counts as set by the operator
    /// (any scheme, loopback and private networks open). Only variables of
    /// llmhost's naming, or a built-in's, do: a variable the plugin named
    /// could be set for another purpose.
    pub explicit: bool,
}

/// What a loaded plugin gets: the intersection of what it asks and what
/// was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Whether it may reach anything at all (false: a plugin file without
    /// an install record).
    pub installed: bool,
    /// Hosts it may reach (HTTPS on 443, public addresses).
    pub hosts: Vec<String>,
    /// Variables its key may come from, in order.
    pub key_env: Vec<String>,
    /// Variables its base URL may come from, in order.
    pub base_url_env: Vec<BaseUrlVar>,
    /// Whether a contract 0.2 plugin that signs its own requests may see
    /// the API key (built-ins: yes; plugin files: only when granted).
    pub key_for_plugin: bool,
}

impl Access {
    /// A built-in provider: trusted as shipped, plus the hosts the
    /// operator added in `llmhost.toml`.
    pub fn builtin(info: &ProviderInfo, settings: Option<&ProviderSettings>) -> Self {
        let mut hosts = info.hosts.clone();
        if let Some(settings) = settings {
            for host in &settings.allowed_hosts {
                if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                    hosts.push(host.clone());
                }
            }
        }
        Self {
            installed: true,
            hosts,
            key_env: info.api_key_env.clone(),
            base_url_env: info
                .base_url_env
                .iter()
                .map(|name| BaseUrlVar {
                    name: name.clone(),
                    explicit: true,
                })
                .collect(),
            key_for_plugin: true,
        }
    }

    /// A third-party plugin with the operator's grant (`None`: no install
    /// record, nothing granted). Hosts listed in `llmhost.toml` count as
    /// granted too; either way only hosts it asks for are given.
    pub fn third_party(
        info: &ProviderInfo,
        record: Option<&InstallRecord>,
        settings: Option<&ProviderSettings>,
    ) -> Self {
        let Some(record) = record else {
            return Self {
                installed: false,
                hosts: Vec::new(),
                key_env: Vec::new(),
                base_url_env: Vec::new(),
                key_for_plugin: false,
            };
        };
        let operator_hosts = record
            .hosts
            .iter()
            .chain(settings.into_iter().flat_map(|s| &s.allowed_hosts));
        let mut hosts: Vec<String> = Vec::new();
        for host in operator_hosts {
            let asked = info.hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
            if asked
                && host_never_grantable(host).is_none()
                && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            {
                hosts.push(host.clone());
            }
        }
        let granted = |asked: &[String]| -> Vec<String> {
            asked
                .iter()
                .filter(|name| {
                    record.env.contains(name) && env_never_grantable(&info.id, name).is_none()
                })
                .cloned()
                .collect()
        };
        let mut key_env = vec![own_key_env(&info.id)];
        key_env.extend(granted(&info.api_key_env));
        let mut base_url_env = vec![BaseUrlVar {
            name: own_base_url_env(&info.id),
            explicit: true,
        }];
        base_url_env.extend(
            granted(&info.base_url_env)
                .into_iter()
                .map(|name| BaseUrlVar {
                    explicit: false,
                    name,
                }),
        );
        key_env.dedup();
        Self {
            installed: true,
            hosts,
            key_env,
            base_url_env,
            key_for_plugin: record.key,
        }
    }
}

/// `text` with control and bidirectional-override characters escaped, so
/// a plugin's strings cannot rewrite what an operator reads in a terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, key_env: &[&str], base_env: &[&str], hosts: &[&str]) -> ProviderInfo {
        let mut info = ProviderInfo::new(id);
        info.name = id.into();
        info.version = "1".into();
        info.default_base_url = "https://a.example/v1".into();
        info.api_key_env = key_env.iter().map(|s| s.to_string()).collect();
        info.base_url_env = base_env.iter().map(|s| s.to_string()).collect();
        info.hosts = hosts.iter().map(|s| s.to_string()).collect();
        info
    }

    #[test]
    fn llmhost_secrets_are_never_grantable_but_a_plugins_own_variables_are() {
        assert_eq!(own_key_env("tiny-llm"), "LLMHOST_TINY_LLM_API_KEY");
        assert!(env_never_grantable("tiny-llm", "LLMHOST_TINY_LLM_API_KEY").is_none());
        assert!(env_never_grantable("tiny-llm", "LLMHOST_TINY_LLM_BASE_URL").is_none());
        for name in [
            "LLMHOST_ENCRYPTION_KEY",
            "ENCRYPTION_KEY",
            "LLMHOST_PREVIOUS_ENCRYPTION_KEYS",
            "LLMHOST_OPENAI_API_KEY",
            "LLMHOST_MASTER_KEY",
            "lower",
            "",
        ] {
            assert!(env_never_grantable("tiny-llm", name).is_some(), "{name}");
        }
        assert!(env_never_grantable("tiny-llm", "OPENAI_API_KEY").is_none());
    }

    #[test]
    fn address_literals_outside_the_public_internet_are_never_grantable() {
        for host in [
            "127.0.0.1",
            "169.254.169.254",
            "[::1]",
            "10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(host_never_grantable(host).is_some(), "{host}");
        }
        assert!(host_never_grantable("api.example.com").is_none());
        assert!(host_never_grantable("8.8.8.8").is_none());
        assert!(host_never_grantable("evil.example/path").is_some());
    }

    #[test]
    fn access_is_the_intersection_of_what_is_asked_and_granted() {
        let info = info(
            "tinyllm",
            &["OPENAI_API_KEY", "LLMHOST_ENCRYPTION_KEY", "TINY_KEY"],
            &["TINYLLM_BASE_URL"],
            &["collect.example.net", "other.example.net"],
        );
        let record = InstallRecord {
            provider: "tinyllm".into(),
            blake3: "00".into(),
            key: false,
            hosts: vec!["collect.example.net".into(), "unasked.example.net".into()],
            env: vec![
                "TINY_KEY".into(),
                "LLMHOST_ENCRYPTION_KEY".into(),
                "TINYLLM_BASE_URL".into(),
            ],
            replaces_builtin: false,
        };
        let access = Access::third_party(&info, Some(&record), None);
        assert_eq!(access.hosts, ["collect.example.net"]);
        assert_eq!(access.key_env, ["LLMHOST_TINYLLM_API_KEY", "TINY_KEY"]);
        assert_eq!(
            access.base_url_env,
            [
                BaseUrlVar {
                    name: "LLMHOST_TINYLLM_BASE_URL".into(),
                    explicit: true
                },
                BaseUrlVar {
                    name: "TINYLLM_BASE_URL".into(),
                    explicit: false
                }
            ]
        );
        let none = Access::third_party(&info, None, None);
        assert!(!none.installed && none.hosts.is_empty() && none.key_env.is_empty());
    }

    #[test]
    fn a_grant_names_only_what_the_plugin_asks_for() {
        let info = info(
            "tinyllm",
            &["OPENAI_API_KEY", "LLMHOST_ENCRYPTION_KEY"],
            &[],
            &["collect.example.net", "127.0.0.1"],
        );
        let builtins = vec![("openai".to_owned(), vec!["OPENAI_API_KEY".to_owned()])];
        let asks = Asks::of(&info, &builtins);
        assert_eq!(asks.key_env[0].status, "by_name");
        assert!(asks.key_env[0].note.as_deref().unwrap().contains("openai"));
        assert_eq!(asks.key_env[1].status, "never");
        assert_eq!(asks.grantable_hosts(), ["collect.example.net"]);
        let grant = |hosts: &[&str], env: &[&str]| Grant {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..Grant::default()
        };
        assert!(
            grant(&["collect.example.net"], &["OPENAI_API_KEY"])
                .check(&asks)
                .is_ok()
        );
        assert!(grant(&["127.0.0.1"], &[]).check(&asks).is_err());
        assert!(grant(&["else.example.net"], &[]).check(&asks).is_err());
        assert!(
            grant(&[], &["LLMHOST_ENCRYPTION_KEY"])
                .check(&asks)
                .is_err()
        );
        assert!(grant(&[], &["HOME"]).check(&asks).is_err());
        let builtin_id = Asks::of(&self::info("openai", &[], &[], &[]), &builtins);
        assert_eq!(
            grant(&[], &[]).check(&builtin_id).unwrap_err().kind(),
            "conflict"
        );
    }

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        assert_eq!(printable("plain ünïcode"), "plain ünïcode");
        assert_eq!(printable("a\x1b[2Kb\r\n"), "a\\u{1b}[2Kb\\u{d}\\u{a}");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
    }
}
