//! `llmhost migrate`: brings the configured database to this llmhost's
//! schema (or, with `--to N`, down to an older one). On PostgreSQL this is
//! the one step that migrates, run once per upgrade (replicas never do at
//! start); it holds an advisory lock, so two at once are safe: the second
//! waits, then finds nothing to do. A SQLite database migrates on open
//! anyway; the command works on it too (and is how to go back down).

use super::output::{Fail, print_json};
use crate::Settings;
use crate::store::{SCHEMA_VERSION, Store};
use clap::Args;
use serde_json::json;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The schema version to migrate to, up or down (0 empties the
    /// database) [default: this llmhost's, the latest].
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,
}

pub async fn run(settings: &Settings, args: MigrateArgs, json: bool) -> Result<(), Fail> {
    let target = args.to.unwrap_or(SCHEMA_VERSION);
    let store = Store::open_unmigrated(&settings.database).await?;
    let from = store.schema_version().await?;
    store.migrate_to(target).await?;
    let to = store.schema_version().await?;
    if json {
        print_json(&json!({
            "database": store.database().to_string(),
            "engine": if settings.database.is_postgres() { "postgres" } else { "sqlite" },
            "from": from,
            "to": to,
            "latest": SCHEMA_VERSION,
        }));
    } else if from == to {
        outln!("{}: schema version {to}, nothing to do", store.database());
    } else {
        outln!(
            "{}: migrated from schema version {from} to {to}",
            store.database()
        );
    }
    Ok(())
}
