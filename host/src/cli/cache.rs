//! `llmhost cache`: the compiled-component cache, shown and pruned.

use super::output::{Fail, print_json};
use crate::{CacheEntry, Host};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Where the cache is, what it holds and what the loaded plugins use
    /// (the default).
    Show,
    /// Delete compiled components no loaded plugin uses: those of older
    /// plugin versions, of removed plugins, or of another wasmtime build.
    /// They are recompiled if ever needed again.
    Prune {
        /// Delete every compiled component, including those in use (the
        /// next start compiles them again).
        #[arg(long)]
        all: bool,
    },
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn entry_json(entry: &CacheEntry) -> Value {
    json!({
        "file": entry.path.display().to_string(),
        "bytes": entry.bytes,
        "in_use": entry.in_use,
    })
}

pub fn run(host: &Host, command: Option<CacheCommand>, json: bool) -> Result<(), Fail> {
    match command.unwrap_or(CacheCommand::Show) {
        CacheCommand::Show => {
            let report = host.component_cache()?;
            let total: u64 = report.artifacts.iter().map(|a| a.bytes).sum();
            let in_use = report.artifacts.iter().filter(|a| a.in_use).count();
            if json {
                print_json(&json!({
                    "dir": report.dir.as_ref().map(|d| d.display().to_string()),
                    "artifacts": report.artifacts.iter().map(entry_json).collect::<Vec<_>>(),
                    "total_bytes": total,
                    "in_use": in_use,
                }));
                return Ok(());
            }
            let Some(dir) = &report.dir else {
                outln!("The component cache is off: every start compiles every plugin.");
                return Ok(());
            };
            outln!("component cache  {}", dir.display());
            outln!(
                "{} compiled components, {}; {in_use} used by the loaded plugins",
                report.artifacts.len(),
                megabytes(total)
            );
            for entry in &report.artifacts {
                let name = entry.path.file_name().unwrap_or_default().to_string_lossy();
                let state = if entry.in_use { "in use" } else { "unused" };
                outln!("  {name}  {:>9}  {state}", megabytes(entry.bytes));
            }
            Ok(())
        }
        CacheCommand::Prune { all } => {
            let removed = host.prune_component_cache(all)?;
            let freed: u64 = removed.iter().map(|a| a.bytes).sum();
            if json {
                print_json(&json!({
                    "removed": removed.iter().map(entry_json).collect::<Vec<_>>(),
                    "freed_bytes": freed,
                }));
            } else {
                outln!(
                    "removed {} compiled components, {} freed",
                    removed.len(),
                    megabytes(freed)
                );
            }
            Ok(())
        }
    }
}
