//! The schema, as versioned migrations with down steps. The version is
//! SQLite's `user_version`; `llmhost init --json` and `Store::schema_version`
//! report it.
//!
//! Money is stored as decimal text (`"0.0025"`), never as a binary float;
//! times as UTC RFC 3339 text with milliseconds.

use rusqlite_migration::{M, Migrations};

const AGENTS_AND_CONFIGS_UP: &str = r#"
CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE agent_llm_configs (
    id                        INTEGER PRIMARY KEY,
    agent_id                  INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    provider                  TEXT NOT NULL,
    model_name                TEXT NOT NULL,
    temperature               REAL,
    max_tokens                INTEGER,
    top_p                     REAL,
    api_key_encrypted         TEXT,
    api_key_hint              TEXT,
    base_url                  TEXT,
    fallback_provider         TEXT,
    fallback_model            TEXT,
    cost_per_1k_input_tokens  TEXT NOT NULL,
    cost_per_1k_output_tokens TEXT NOT NULL,
    custom_pricing            INTEGER NOT NULL DEFAULT 0,
    priority                  INTEGER NOT NULL DEFAULT 0,
    enabled                   INTEGER NOT NULL DEFAULT 1,
    created_at                TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at                TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    metadata_json             TEXT NOT NULL DEFAULT '{}',
    CHECK ((fallback_provider IS NULL) = (fallback_model IS NULL)),
    CHECK ((api_key_encrypted IS NULL) = (api_key_hint IS NULL)),
    CHECK (enabled IN (0, 1) AND custom_pricing IN (0, 1))
) STRICT;

CREATE INDEX agent_llm_configs_by_agent
    ON agent_llm_configs (agent_id, enabled, priority, id);
"#;

const AGENTS_AND_CONFIGS_DOWN: &str = r#"
DROP INDEX agent_llm_configs_by_agent;
DROP TABLE agent_llm_configs;
DROP TABLE agents;
"#;

/// One row per provider attempt. Agent and config ids become NULL when
/// those are deleted; `agent_name` keeps the history readable.
const USAGE_EVENTS_UP: &str = r#"
CREATE TABLE usage_events (
    id                 INTEGER PRIMARY KEY,
    agent_id           INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    agent_name         TEXT NOT NULL,
    config_id          INTEGER REFERENCES agent_llm_configs(id) ON DELETE SET NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    estimated          INTEGER NOT NULL DEFAULT 0,
    cost_usd           TEXT,
    latency_ms         INTEGER NOT NULL,
    ttft_ms            INTEGER,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error_kind         TEXT,
    attempt            INTEGER NOT NULL DEFAULT 1,
    fallback           INTEGER NOT NULL DEFAULT 0,
    streamed           INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((status = 'error') = (error_kind IS NOT NULL))
) STRICT;

CREATE INDEX usage_events_by_agent ON usage_events (agent_id, created_at);
CREATE INDEX usage_events_by_config ON usage_events (config_id);
"#;

const USAGE_EVENTS_DOWN: &str = r#"
DROP INDEX usage_events_by_config;
DROP INDEX usage_events_by_agent;
DROP TABLE usage_events;
"#;

/// Per-config retry settings.
const CONFIG_RETRY_UP: &str = r#"
ALTER TABLE agent_llm_configs ADD COLUMN max_attempts INTEGER CHECK (max_attempts BETWEEN 1 AND 10);
ALTER TABLE agent_llm_configs ADD COLUMN deadline_ms INTEGER CHECK (deadline_ms > 0);
"#;

const CONFIG_RETRY_DOWN: &str = r#"
ALTER TABLE agent_llm_configs DROP COLUMN deadline_ms;
ALTER TABLE agent_llm_configs DROP COLUMN max_attempts;
"#;

/// The gateway: virtual keys, budgets of agents, and usage rows for every
/// call (not only agents'), tagged with the request id, the virtual key
/// and the route the caller asked for. SQLite cannot relax a NOT NULL
/// column in place, so `usage_events` is rebuilt.
const GATEWAY_UP: &str = r#"
CREATE TABLE virtual_keys (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    key_hash      TEXT NOT NULL UNIQUE,
    hash_key_id   TEXT NOT NULL,
    key_hint      TEXT NOT NULL,
    agent_name    TEXT,
    models_json   TEXT,
    budget_usd    TEXT,
    budget_period TEXT CHECK (budget_period IN ('day', 'week', 'month', 'total')),
    rpm           INTEGER CHECK (rpm > 0),
    tpm           INTEGER CHECK (tpm > 0),
    expires_at    TEXT,
    revoked_at    TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((budget_usd IS NULL) = (budget_period IS NULL))
) STRICT;

ALTER TABLE agents ADD COLUMN budget_usd TEXT;
ALTER TABLE agents ADD COLUMN budget_tokens INTEGER CHECK (budget_tokens > 0);
ALTER TABLE agents ADD COLUMN budget_period TEXT
    CHECK (budget_period IN ('day', 'week', 'month', 'total'));

CREATE TABLE usage_events_v4 (
    id                      INTEGER PRIMARY KEY,
    agent_id                INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    agent_name              TEXT,
    config_id               INTEGER REFERENCES agent_llm_configs(id) ON DELETE SET NULL,
    virtual_key_id          INTEGER REFERENCES virtual_keys(id) ON DELETE SET NULL,
    virtual_key_name        TEXT,
    request_id              TEXT,
    route                   TEXT,
    provider                TEXT NOT NULL,
    model                   TEXT NOT NULL,
    input_tokens            INTEGER NOT NULL DEFAULT 0,
    output_tokens           INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_write_hour_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens        INTEGER NOT NULL DEFAULT 0,
    estimated               INTEGER NOT NULL DEFAULT 0,
    cost_usd                TEXT,
    latency_ms              INTEGER NOT NULL,
    ttft_ms                 INTEGER,
    status                  TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error_kind              TEXT,
    attempt                 INTEGER NOT NULL DEFAULT 1,
    fallback                INTEGER NOT NULL DEFAULT 0,
    streamed                INTEGER NOT NULL DEFAULT 0,
    created_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((status = 'error') = (error_kind IS NOT NULL))
) STRICT;

INSERT INTO usage_events_v4 (id, agent_id, agent_name, config_id, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    estimated, cost_usd, latency_ms, ttft_ms, status, error_kind, attempt, fallback,
    streamed, created_at, route)
SELECT id, agent_id, agent_name, config_id, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    estimated, cost_usd, latency_ms, ttft_ms, status, error_kind, attempt, fallback,
    streamed, created_at, 'agent:' || agent_name
FROM usage_events;

DROP INDEX usage_events_by_config;
DROP INDEX usage_events_by_agent;
DROP TABLE usage_events;
ALTER TABLE usage_events_v4 RENAME TO usage_events;

CREATE INDEX usage_events_by_agent ON usage_events (agent_id, created_at);
CREATE INDEX usage_events_by_config ON usage_events (config_id);
CREATE INDEX usage_events_by_virtual_key ON usage_events (virtual_key_id, created_at);
CREATE INDEX usage_events_by_time ON usage_events (created_at);
CREATE INDEX usage_events_by_request ON usage_events (request_id) WHERE request_id IS NOT NULL;
"#;

/// Back to version 3: rows of calls made for no agent are dropped (the old
/// table cannot hold them).
const GATEWAY_DOWN: &str = r#"
CREATE TABLE usage_events_v3 (
    id                 INTEGER PRIMARY KEY,
    agent_id           INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    agent_name         TEXT NOT NULL,
    config_id          INTEGER REFERENCES agent_llm_configs(id) ON DELETE SET NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    estimated          INTEGER NOT NULL DEFAULT 0,
    cost_usd           TEXT,
    latency_ms         INTEGER NOT NULL,
    ttft_ms            INTEGER,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error_kind         TEXT,
    attempt            INTEGER NOT NULL DEFAULT 1,
    fallback           INTEGER NOT NULL DEFAULT 0,
    streamed           INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((status = 'error') = (error_kind IS NOT NULL))
) STRICT;

INSERT INTO usage_events_v3 (id, agent_id, agent_name, config_id, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    estimated, cost_usd, latency_ms, ttft_ms, status, error_kind, attempt, fallback,
    streamed, created_at)
SELECT id, agent_id, agent_name, config_id, provider, model,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    estimated, cost_usd, latency_ms, ttft_ms, status, error_kind, attempt, fallback,
    streamed, created_at
FROM usage_events WHERE agent_name IS NOT NULL;

DROP INDEX usage_events_by_request;
DROP INDEX usage_events_by_time;
DROP INDEX usage_events_by_virtual_key;
DROP INDEX usage_events_by_config;
DROP INDEX usage_events_by_agent;
DROP TABLE usage_events;
ALTER TABLE usage_events_v3 RENAME TO usage_events;
CREATE INDEX usage_events_by_agent ON usage_events (agent_id, created_at);
CREATE INDEX usage_events_by_config ON usage_events (config_id);

ALTER TABLE agents DROP COLUMN budget_period;
ALTER TABLE agents DROP COLUMN budget_tokens;
ALTER TABLE agents DROP COLUMN budget_usd;
DROP TABLE virtual_keys;
"#;

/// Admin tokens: bearer credentials of the admin API and the console,
/// made by the master key (or the CLI). Only a hash and a hint are kept.
const ADMIN_TOKENS_UP: &str = r#"
CREATE TABLE admin_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  BLOB NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at  TEXT
) STRICT;
"#;

const ADMIN_TOKENS_DOWN: &str = "DROP TABLE admin_tokens;";

/// Every migration, oldest first. Never edit one that has shipped: add
/// another.
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(AGENTS_AND_CONFIGS_UP)
            .down(AGENTS_AND_CONFIGS_DOWN)
            .comment("agents and their LLM configs"),
        M::up(USAGE_EVENTS_UP)
            .down(USAGE_EVENTS_DOWN)
            .foreign_key_check()
            .comment("usage events"),
        M::up(CONFIG_RETRY_UP)
            .down(CONFIG_RETRY_DOWN)
            .comment("per-config retry settings"),
        M::up(GATEWAY_UP)
            .down(GATEWAY_DOWN)
            .foreign_key_check()
            .comment("virtual keys, agent budgets, usage of every call"),
        M::up(ADMIN_TOKENS_UP)
            .down(ADMIN_TOKENS_DOWN)
            .comment("admin tokens"),
    ])
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 5;

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid_and_complete() {
        let migrations = super::migrations();
        migrations.validate().unwrap();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations.to_latest(&mut conn).unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, super::SCHEMA_VERSION);
    }
}
