//! `llmhost plugins`: list, inspect, install and remove provider plugins.

use super::output::{self, Fail, print_json};
use crate::host::grants::{self, AskedEnv, printable};
use crate::types::{AuthScheme, ProviderInfo, capability_names};
use crate::{Asks, CONTRACT_PACKAGE, Error, Grant, Host, InstallRecord, PluginOrigin};
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the loaded plugins: id, version, source, contract version,
    /// what they were granted (the default).
    List,
    /// Show what a component file is and what it asks for: provider info,
    /// models, hosts and environment variables, each judged against the
    /// grant rules, and its contract version. Runs nothing of it but its
    /// info().
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Check a component, record what you grant it, and copy it into the
    /// plugin directory as ID.wasm (the grant beside it as ID.toml, bound
    /// to the file's content: a changed file must be installed again).
    ///
    /// A plugin gets only what it asks for and you grant: hosts it may
    /// reach (HTTPS, public addresses) and environment variables its key
    /// and base URL may come from. Its own LLMHOST_<ID>_API_KEY and
    /// LLMHOST_<ID>_BASE_URL are always granted; llmhost's own settings and
    /// secrets never are. On a terminal you are asked to confirm the hosts
    /// it asks for; scripts pass --yes or name each grant.
    #[command(verbatim_doc_comment)]
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// Grant one host it asks for; repeatable. Without --yes, only
        /// the hosts named here are granted.
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
        /// Grant one environment variable it asks for (beyond its own
        /// LLMHOST_<ID>_*); repeatable. --yes never grants variables.
        #[arg(long = "allow-env", value_name = "NAME")]
        allow_env: Vec<String>,
        /// Let the key enter the plugin: only for a plugin that handles
        /// the key itself (every contract 0.1 plugin; a 0.2 plugin that
        /// signs its requests). --yes never grants the key.
        #[arg(long = "allow-key")]
        allow_key: bool,
        /// Grant every host it asks for without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Serve it instead of the built-in provider with the same id.
        #[arg(long)]
        replace: bool,
        /// Replace an installed plugin with the same id (also: approve a
        /// changed file again).
        #[arg(long)]
        force: bool,
    },
    /// Remove an installed plugin (and its grant) from the plugin
    /// directory.
    Remove {
        /// The provider id.
        id: String,
    },
}

fn no_dir() -> Error {
    Error::InvalidConfig(
        "no plugin directory is configured: pass --plugins DIR, set LLMHOST_PLUGINS, or set `plugins` in llmhost.toml"
            .into(),
    )
}

fn info_json(info: &ProviderInfo, wit_version: &str, asks: &Asks) -> Value {
    json!({
        "id": info.id,
        "name": info.name,
        "version": info.version,
        "wit_version": format!("{CONTRACT_PACKAGE}@{wit_version}"),
        "default_base_url": info.default_base_url,
        "api_key_env": info.api_key_env,
        "base_url_env": info.base_url_env,
        "hosts": info.hosts,
        "auth": info.auth,
        "stream_format": info.stream_format,
        "asks": asks,
        "models": info.models.iter().map(|m| json!({
            "id": m.id,
            "display_name": m.display_name,
            "context_window": m.context_window,
            "max_output_tokens": m.max_output_tokens,
            "capabilities": capability_names(m.capabilities),
        })).collect::<Vec<_>>(),
    })
}

fn env_line(asked: &[AskedEnv]) -> String {
    if asked.is_empty() {
        return "none".to_owned();
    }
    asked
        .iter()
        .map(|e| {
            let status = match e.status {
                "own" => "its own, granted".to_owned(),
                "never" => format!("never granted: {}", e.note.as_deref().unwrap_or("")),
                _ => match &e.note {
                    Some(note) => format!("{note}; only with --allow-env"),
                    None => "only with --allow-env".to_owned(),
                },
            };
            format!("{} ({status})", printable(&e.name))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the key would enter the plugin, and why.
fn sees_key_line(info: &ProviderInfo, asks: &Asks) -> String {
    if !asks.sees_key {
        let how = match &info.auth {
            AuthScheme::Bearer => "as `authorization: Bearer`".to_owned(),
            AuthScheme::Header(name) => format!("in the `{}` header", printable(name)),
            AuthScheme::Query(name) => format!("as the `{}` query parameter", printable(name)),
            _ => "nowhere: the vendor takes no key".to_owned(),
        };
        return format!("no (the host adds it to each request, {how})");
    }
    "yes, only with --allow-key (it sends requests itself or signs them)".to_owned()
}

fn show_info(info: &ProviderInfo, wit_version: &str, asks: &Asks) {
    outln!(
        "{} {} - {}",
        printable(&info.id),
        printable(&info.version),
        printable(&info.name)
    );
    outln!("  contract        {CONTRACT_PACKAGE}@{wit_version}");
    outln!("  default URL     {}", printable(&info.default_base_url));
    outln!("  asks for:");
    outln!(
        "    hosts         {}",
        if asks.hosts.is_empty() {
            "none (only a base URL you configure)".to_owned()
        } else {
            asks.hosts
                .iter()
                .map(|h| match &h.refused {
                    Some(why) => format!("{} (never granted: {why})", printable(&h.host)),
                    None => printable(&h.host).into_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    outln!("    key from      {}", env_line(&asks.key_env));
    outln!("    base URL from {}", env_line(&asks.base_url_env));
    outln!("    sees the key  {}", sees_key_line(info, asks));
    if let Some(id) = &asks.replaces_builtin {
        outln!("    replaces      the built-in provider `{id}` (needs --replace)");
    }
    outln!("  models          {}", info.models.len());
    for m in &info.models {
        outln!(
            "    {:<32} context {:>8}",
            printable(&m.id),
            m.context_window
        );
    }
}

/// The grant the operator gives: from flags, or asked on a terminal.
fn choose_grant(
    info: &ProviderInfo,
    wit_version: &str,
    asks: &Asks,
    flags: Grant,
    yes: bool,
) -> Result<Grant, Fail> {
    let named = !flags.hosts.is_empty() || !flags.env.is_empty();
    if yes {
        return Ok(Grant {
            hosts: asks.grantable_hosts(),
            ..flags
        });
    }
    if named || asks.grantable_hosts().is_empty() {
        return Ok(flags);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::InvalidConfig(format!(
            "`{}` asks to reach {}: confirm with --yes, or grant hosts one by one with --allow-host",
            info.id,
            asks.grantable_hosts().join(", ")
        ))
        .into());
    }
    show_info(info, wit_version, asks);
    eprint!(
        "Grant `{}` the hosts {}? [y/N] ",
        info.id,
        asks.grantable_hosts().join(", ")
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|err| Error::InvalidConfig(format!("cannot read the answer: {err}")))?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(Error::InvalidConfig("not installed: the grant was declined".into()).into());
    }
    Ok(Grant {
        hosts: asks.grantable_hosts(),
        ..flags
    })
}

pub async fn run(
    host: &Host,
    dir: Option<&Path>,
    command: Option<PluginsCommand>,
    json: bool,
) -> Result<(), Fail> {
    match command.unwrap_or(PluginsCommand::List) {
        PluginsCommand::List => output::plugins(host, json),
        PluginsCommand::Inspect { file } => {
            let (info, wit_version, asks) = host.inspect(&file).await?;
            if json {
                print_json(&info_json(&info, &wit_version, &asks));
            } else {
                show_info(&info, &wit_version, &asks);
            }
            Ok(())
        }
        PluginsCommand::Install {
            file,
            allow_hosts,
            allow_env,
            allow_key,
            yes,
            replace,
            force,
        } => {
            let dir = dir.ok_or_else(no_dir)?;
            let (info, wit_version, asks) = host.inspect(&file).await?;
            let flags = Grant {
                hosts: allow_hosts,
                env: allow_env,
                key: allow_key,
                replace_builtin: replace,
                force,
            };
            let grant = choose_grant(&info, &wit_version, &asks, flags, yes)?;
            let installed = host.install_plugin(dir, &file, &grant).await?;
            let record = &installed.record;
            if json {
                let mut object =
                    info_json(&installed.info, &installed.wit_version, &installed.asks);
                object["installed"] = json!(installed.path.display().to_string());
                object["granted"] = json!({
                    "hosts": record.hosts,
                    "env": record.env,
                    "own_env": [
                        grants::own_key_env(&installed.info.id),
                        grants::own_base_url_env(&installed.info.id),
                    ],
                    "replaces_builtin": record.replaces_builtin,
                    "blake3": record.blake3,
                });
                print_json(&object);
            } else {
                show_info(&installed.info, &installed.wit_version, &installed.asks);
                outln!("granted:");
                outln!(
                    "    hosts         {}",
                    if record.hosts.is_empty() {
                        "none".to_owned()
                    } else {
                        record.hosts.join(", ")
                    }
                );
                let mut env = vec![
                    grants::own_key_env(&installed.info.id),
                    grants::own_base_url_env(&installed.info.id),
                ];
                env.extend(record.env.iter().cloned());
                outln!("    environment   {}", env.join(", "));
                if record.replaces_builtin {
                    outln!(
                        "    replaces      the built-in provider `{}`",
                        installed.info.id
                    );
                }
                outln!("    bound to      blake3 {}", record.blake3);
                outln!("installed {}", installed.path.display());
            }
            Ok(())
        }
        PluginsCommand::Remove { id } => {
            let dir = dir.ok_or_else(no_dir)?;
            let Some(plugin) = host.plugins().into_iter().find(|p| p.id == id) else {
                return Err(Error::NotFound {
                    what: "plugin",
                    key: id,
                }
                .into());
            };
            let PluginOrigin::File(path) = &plugin.origin else {
                return Err(Error::InvalidConfig(format!(
                    "`{id}` is built into llmhost and cannot be removed"
                ))
                .into());
            };
            if path.parent() != Some(dir) {
                return Err(Error::InvalidConfig(format!(
                    "`{id}` comes from {}, outside the plugin directory {}",
                    path.display(),
                    dir.display()
                ))
                .into());
            }
            std::fs::remove_file(path).map_err(|err| {
                Error::Internal(format!("cannot remove {}: {err}", path.display()))
            })?;
            let record = InstallRecord::path_for(path);
            if record.exists() {
                let _ = std::fs::remove_file(&record);
            }
            if json {
                print_json(&json!({"removed": id, "path": path.display().to_string()}));
            } else {
                outln!("removed {id} ({})", path.display());
            }
            Ok(())
        }
    }
}
