//! What the admin API reports about the store itself.

use super::Store;
use super::sql::params;
use crate::error::Error;

impl Store {
    /// How many stored API keys each encryption key id encrypts (the id
    /// inside `llmhost:vN:<key id>:…`), by key id.
    pub async fn api_keys_by_encryption_key(&self) -> Result<Vec<(String, u64)>, Error> {
        self.read(|conn| {
            let rows = conn.query(
                "SELECT api_key_encrypted FROM agent_llm_configs \
                 WHERE api_key_encrypted IS NOT NULL",
                params![],
            )?;
            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            for row in rows {
                let stored: String = row.get(0)?;
                let id = crate::secrets::Keyring::key_id_of(&stored)
                    .unwrap_or("unreadable")
                    .to_owned();
                *counts.entry(id).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
        })
        .await
    }
}

/// One usage row as the admin API's reports read it.
#[derive(Debug, Clone, PartialEq)]
pub struct UsagePoint {
    pub created_at: String,
    pub agent_name: Option<String>,
    pub virtual_key_name: Option<String>,
    pub provider: String,
    pub model: String,
    pub ok: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<llmhost_registry::rust_decimal::Decimal>,
    pub latency_ms: u64,
}

impl Store {
    /// The usage rows created in `[since, until)` (store timestamps),
    /// oldest first, through the `created_at` index.
    pub async fn usage_points(
        &self,
        since: String,
        until: String,
    ) -> Result<Vec<UsagePoint>, Error> {
        self.read(move |conn| {
            conn.query_map(
                "SELECT created_at, agent_name, virtual_key_name, provider, model, status, \
                 input_tokens, output_tokens, cost_usd, latency_ms FROM usage_events \
                 WHERE created_at >= ?1 AND created_at < ?2 ORDER BY created_at, id",
                params![since, until],
                |row| {
                    let cost: Option<String> = row.get("cost_usd")?;
                    Ok(UsagePoint {
                        created_at: row.get("created_at")?,
                        agent_name: row.get("agent_name")?,
                        virtual_key_name: row.get("virtual_key_name")?,
                        provider: row.get("provider")?,
                        model: row.get("model")?,
                        ok: row.get::<_, String>("status")? == "ok",
                        input_tokens: row.get("input_tokens")?,
                        output_tokens: row.get("output_tokens")?,
                        cost_usd: cost
                            .map(|c| super::records::decimal(&c, "cost_usd"))
                            .transpose()?,
                        latency_ms: row.get("latency_ms")?,
                    })
                },
            )
        })
        .await
    }
}
