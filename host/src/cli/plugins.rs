//! `llmhost plugins`: list, inspect, install and remove provider plugins.

use super::output::{self, Fail, print_json};
use crate::types::{ProviderInfo, capability_names};
use crate::{CONTRACT_PACKAGE, Error, Host, InstallRecord, PluginOrigin};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the loaded plugins: id, version, source, contract version,
    /// hosts (the default).
    List,
    /// Show what a component file is: its provider info, models, the hosts
    /// it asks for and its contract version. Runs nothing of it but its
    /// info().
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Check a component and copy it into the plugin directory as ID.wasm.
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// Approve an extra host for it (HTTPS, public addresses only);
        /// repeatable. It may always reach the hosts it declares and the
        /// base URL you configure.
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
        /// Replace an installed plugin with the same id.
        #[arg(long)]
        force: bool,
    },
    /// Remove an installed plugin from the plugin directory.
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

fn info_json(info: &ProviderInfo, wit_version: &str) -> Value {
    json!({
        "id": info.id,
        "name": info.name,
        "version": info.version,
        "wit_version": format!("{CONTRACT_PACKAGE}@{wit_version}"),
        "default_base_url": info.default_base_url,
        "api_key_env": info.api_key_env,
        "base_url_env": info.base_url_env,
        "hosts": info.hosts,
        "models": info.models.iter().map(|m| json!({
            "id": m.id,
            "display_name": m.display_name,
            "context_window": m.context_window,
            "max_output_tokens": m.max_output_tokens,
            "capabilities": capability_names(m.capabilities),
        })).collect::<Vec<_>>(),
    })
}

fn show_info(info: &ProviderInfo, wit_version: &str) {
    outln!("{} {} - {}", info.id, info.version, info.name);
    outln!("  contract        {CONTRACT_PACKAGE}@{wit_version}");
    outln!("  default URL     {}", info.default_base_url);
    outln!(
        "  key from        {}",
        if info.api_key_env.is_empty() {
            "-".to_owned()
        } else {
            info.api_key_env.join(", ")
        }
    );
    outln!(
        "  hosts it asks   {}",
        if info.hosts.is_empty() {
            "none (only a base URL you configure)".to_owned()
        } else {
            info.hosts.join(", ")
        }
    );
    outln!("  models          {}", info.models.len());
    for m in &info.models {
        outln!("    {:<32} context {:>8}", m.id, m.context_window);
    }
}

/// Copies `from` to `to` through a temporary file in the same directory.
fn copy_atomically(from: &Path, to: &Path) -> Result<(), Error> {
    let io = |err: std::io::Error| Error::Internal(format!("cannot write {}: {err}", to.display()));
    let dir = to.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::fs::copy(from, tmp.path()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(to).map_err(|err| io(err.error))?;
    Ok(())
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
            let (info, wit_version) = host.inspect(&file).await?;
            if json {
                print_json(&info_json(&info, &wit_version));
            } else {
                show_info(&info, &wit_version);
            }
            Ok(())
        }
        PluginsCommand::Install {
            file,
            allow_hosts,
            force,
        } => {
            let dir = dir.ok_or_else(no_dir)?;
            let (info, wit_version) = host.inspect(&file).await?;
            for allowed in &allow_hosts {
                let valid = !allowed.is_empty()
                    && allowed
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
                if !valid {
                    return Err(Error::InvalidConfig(format!(
                        "--allow-host takes a host name such as api.example.com, not `{allowed}`"
                    ))
                    .into());
                }
            }
            std::fs::create_dir_all(dir).map_err(|err| {
                Error::InvalidConfig(format!("cannot create {}: {err}", dir.display()))
            })?;
            let target = dir.join(format!("{}.wasm", info.id));
            let existing = host.plugins().into_iter().find(|p| p.id == info.id);
            if let Some(existing) = &existing
                && matches!(&existing.origin, PluginOrigin::File(_))
                && !force
            {
                return Err(Error::Conflict(format!(
                    "provider `{}` is already installed (version {}); pass --force to replace it",
                    info.id, existing.version
                ))
                .into());
            }
            if target.exists() && !force {
                return Err(Error::Conflict(format!(
                    "{} exists; pass --force to replace it",
                    target.display()
                ))
                .into());
            }
            copy_atomically(&file, &target)?;
            let record = InstallRecord {
                allowed_hosts: allow_hosts.clone(),
            };
            let record_path = InstallRecord::path_for(&target);
            // Host names are checked above, so a JSON array of them is
            // also a TOML array.
            let text = format!(
                "# Written by `llmhost plugins install`.\nallowed_hosts = {}\n",
                serde_json::to_string(&record.allowed_hosts).unwrap_or_else(|_| "[]".into())
            );
            std::fs::write(&record_path, text).map_err(|err| {
                Error::Internal(format!("cannot write {}: {err}", record_path.display()))
            })?;
            let replaces_builtin = existing
                .as_ref()
                .is_some_and(|p| p.origin == PluginOrigin::BuiltIn);
            if json {
                let mut object = info_json(&info, &wit_version);
                object["installed"] = json!(target.display().to_string());
                object["allowed_hosts"] = json!(allow_hosts);
                object["replaces_builtin"] = json!(replaces_builtin);
                print_json(&object);
            } else {
                show_info(&info, &wit_version);
                if !allow_hosts.is_empty() {
                    outln!("  also approved   {}", allow_hosts.join(", "));
                }
                if replaces_builtin {
                    outln!("It replaces the built-in provider `{}`.", info.id);
                }
                outln!("installed {}", target.display());
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
