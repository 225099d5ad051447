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

/// The config columns of one price unit: the operator's prices as the
/// JSON of `ConfigPrices` (USD per million tokens as decimal strings, cache
/// prices left out), NULL for the catalogue's. `cost_per_1k_*` held USD per
/// 1,000 tokens, filled from the registry unless `custom_pricing`; custom
/// ones move over exactly (x 1000, to micro-dollars first, then printed as
/// a decimal). The table is rebuilt because `custom_pricing` is in a CHECK.
const ONE_PRICE_UNIT_UP: &str = r#"
CREATE TABLE agent_llm_configs_v5 (
    id                INTEGER PRIMARY KEY,
    agent_id          INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    provider          TEXT NOT NULL,
    model_name        TEXT NOT NULL,
    temperature       REAL,
    max_tokens        INTEGER,
    top_p             REAL,
    api_key_encrypted TEXT,
    api_key_hint      TEXT,
    base_url          TEXT,
    fallback_provider TEXT,
    fallback_model    TEXT,
    prices_json       TEXT CHECK (prices_json IS NULL OR json_type(prices_json) = 'object'),
    priority          INTEGER NOT NULL DEFAULT 0,
    enabled           INTEGER NOT NULL DEFAULT 1,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    metadata_json     TEXT NOT NULL DEFAULT '{}',
    max_attempts      INTEGER CHECK (max_attempts BETWEEN 1 AND 10),
    deadline_ms       INTEGER CHECK (deadline_ms > 0),
    CHECK ((fallback_provider IS NULL) = (fallback_model IS NULL)),
    CHECK ((api_key_encrypted IS NULL) = (api_key_hint IS NULL)),
    CHECK (enabled IN (0, 1))
) STRICT;

WITH micros AS (
    SELECT id,
           CAST(round(CAST(cost_per_1k_input_tokens AS REAL) * 1e9) AS INTEGER) AS input,
           CAST(round(CAST(cost_per_1k_output_tokens AS REAL) * 1e9) AS INTEGER) AS output
    FROM agent_llm_configs
)
INSERT INTO agent_llm_configs_v5 (id, agent_id, provider, model_name, temperature, max_tokens,
    top_p, api_key_encrypted, api_key_hint, base_url, fallback_provider, fallback_model,
    prices_json, priority, enabled, created_at, updated_at, metadata_json, max_attempts,
    deadline_ms)
SELECT c.id, c.agent_id, c.provider, c.model_name, c.temperature, c.max_tokens, c.top_p,
    c.api_key_encrypted, c.api_key_hint, c.base_url, c.fallback_provider, c.fallback_model,
    CASE WHEN c.custom_pricing = 1 THEN json_object(
        'input', rtrim(rtrim(printf('%d.%06d', m.input / 1000000, m.input % 1000000), '0'), '.'),
        'output', rtrim(rtrim(printf('%d.%06d', m.output / 1000000, m.output % 1000000), '0'), '.'),
        'cache_read', NULL, 'cache_write', NULL, 'cache_write_hour', NULL)
    END,
    c.priority, c.enabled, c.created_at, c.updated_at, c.metadata_json, c.max_attempts,
    c.deadline_ms
FROM agent_llm_configs c JOIN micros m ON m.id = c.id;

DROP INDEX agent_llm_configs_by_agent;
DROP TABLE agent_llm_configs;
ALTER TABLE agent_llm_configs_v5 RENAME TO agent_llm_configs;
CREATE INDEX agent_llm_configs_by_agent
    ON agent_llm_configs (agent_id, enabled, priority, id);
"#;

/// Back to version 4: custom input and output prices return to USD per
/// 1,000 tokens with `custom_pricing` set; their cache prices are dropped
/// (version 4 has none). Configs on the catalogue's prices get 0 until
/// their next update fills them from the registry.
const ONE_PRICE_UNIT_DOWN: &str = r#"
CREATE TABLE agent_llm_configs_v4 (
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
    max_attempts              INTEGER CHECK (max_attempts BETWEEN 1 AND 10),
    deadline_ms               INTEGER CHECK (deadline_ms > 0),
    CHECK ((fallback_provider IS NULL) = (fallback_model IS NULL)),
    CHECK ((api_key_encrypted IS NULL) = (api_key_hint IS NULL)),
    CHECK (enabled IN (0, 1) AND custom_pricing IN (0, 1))
) STRICT;

WITH micros AS (
    SELECT id,
           CAST(round(CAST(json_extract(prices_json, '$.input') AS REAL) * 1e6) AS INTEGER) AS input,
           CAST(round(CAST(json_extract(prices_json, '$.output') AS REAL) * 1e6) AS INTEGER) AS output
    FROM agent_llm_configs WHERE prices_json IS NOT NULL
)
INSERT INTO agent_llm_configs_v4 (id, agent_id, provider, model_name, temperature, max_tokens,
    top_p, api_key_encrypted, api_key_hint, base_url, fallback_provider, fallback_model,
    cost_per_1k_input_tokens, cost_per_1k_output_tokens, custom_pricing, priority, enabled,
    created_at, updated_at, metadata_json, max_attempts, deadline_ms)
SELECT c.id, c.agent_id, c.provider, c.model_name, c.temperature, c.max_tokens, c.top_p,
    c.api_key_encrypted, c.api_key_hint, c.base_url, c.fallback_provider, c.fallback_model,
    coalesce(rtrim(rtrim(printf('%d.%09d', m.input / 1000000000, m.input % 1000000000), '0'), '.'), '0'),
    coalesce(rtrim(rtrim(printf('%d.%09d', m.output / 1000000000, m.output % 1000000000), '0'), '.'), '0'),
    m.id IS NOT NULL,
    c.priority, c.enabled, c.created_at, c.updated_at, c.metadata_json, c.max_attempts,
    c.deadline_ms
FROM agent_llm_configs c LEFT JOIN micros m ON m.id = c.id;

DROP INDEX agent_llm_configs_by_agent;
DROP TABLE agent_llm_configs;
ALTER TABLE agent_llm_configs_v4 RENAME TO agent_llm_configs;
CREATE INDEX agent_llm_configs_by_agent
    ON agent_llm_configs (agent_id, enabled, priority, id);
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

/// How a call was served: the response cache, the choice among routes,
/// the experiment.
const SERVED_UP: &str = r#"
ALTER TABLE usage_events ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN saved_usd TEXT;
ALTER TABLE usage_events ADD COLUMN choice TEXT;
ALTER TABLE usage_events ADD COLUMN choice_reason TEXT;
ALTER TABLE usage_events ADD COLUMN experiment TEXT;
ALTER TABLE usage_events ADD COLUMN variant TEXT;
CREATE INDEX usage_events_by_experiment ON usage_events (experiment, variant, created_at)
    WHERE experiment IS NOT NULL;
"#;

const SERVED_DOWN: &str = r#"
DROP INDEX usage_events_by_experiment;
ALTER TABLE usage_events DROP COLUMN variant;
ALTER TABLE usage_events DROP COLUMN experiment;
ALTER TABLE usage_events DROP COLUMN choice_reason;
ALTER TABLE usage_events DROP COLUMN choice;
ALTER TABLE usage_events DROP COLUMN saved_usd;
ALTER TABLE usage_events DROP COLUMN cache_hit;
"#;

/// Load balancing among an agent's configs of one priority (the agent's
/// strategy, each config's weight) and each config's larger-context
/// fallback.
const BALANCE_UP: &str = r#"
ALTER TABLE agents ADD COLUMN balance TEXT NOT NULL DEFAULT 'priority'
    CHECK (balance IN ('priority', 'weighted', 'least_in_flight', 'lowest_latency'));
ALTER TABLE agent_llm_configs ADD COLUMN weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1);
ALTER TABLE agent_llm_configs ADD COLUMN context_fallback_provider TEXT;
ALTER TABLE agent_llm_configs ADD COLUMN context_fallback_model TEXT;
"#;

const BALANCE_DOWN: &str = r#"
ALTER TABLE agent_llm_configs DROP COLUMN context_fallback_model;
ALTER TABLE agent_llm_configs DROP COLUMN context_fallback_provider;
ALTER TABLE agent_llm_configs DROP COLUMN weight;
ALTER TABLE agents DROP COLUMN balance;
"#;

/// A/B experiments of an agent: variants (provider, model, sampling
/// settings) that share its traffic by weight. At most one experiment of
/// an agent is active, which a partial unique index keeps.
const EXPERIMENTS_UP: &str = r#"
CREATE TABLE experiments (
    id          INTEGER PRIMARY KEY,
    agent_id    INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    name        TEXT NOT NULL UNIQUE,
    sticky      TEXT NOT NULL CHECK (sticky IN ('user', 'request')),
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    stopped_at  TEXT,
    CHECK ((status = 'stopped') = (stopped_at IS NOT NULL))
) STRICT;

CREATE UNIQUE INDEX experiments_one_active_per_agent
    ON experiments (agent_id) WHERE status = 'active';

CREATE TABLE experiment_variants (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT NOT NULL,
    weight        INTEGER NOT NULL CHECK (weight > 0),
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    temperature   REAL,
    max_tokens    INTEGER CHECK (max_tokens > 0),
    top_p         REAL,
    PRIMARY KEY (experiment_id, name),
    UNIQUE (experiment_id, position)
) STRICT;
"#;

const EXPERIMENTS_DOWN: &str = r#"
DROP TABLE experiment_variants;
DROP INDEX experiments_one_active_per_agent;
DROP TABLE experiments;
"#;

/// The response cache: agents and virtual keys opt in with a time to
/// live; an agent may also cache sampled requests, a key may share its
/// answers with other keys.
const RESPONSE_CACHE_UP: &str = r#"
ALTER TABLE agents ADD COLUMN cache_ttl_secs INTEGER
    CHECK (cache_ttl_secs BETWEEN 1 AND 2592000);
ALTER TABLE agents ADD COLUMN cache_sampled INTEGER NOT NULL DEFAULT 0
    CHECK (cache_sampled IN (0, 1));
ALTER TABLE virtual_keys ADD COLUMN cache_ttl_secs INTEGER
    CHECK (cache_ttl_secs BETWEEN 1 AND 2592000);
ALTER TABLE virtual_keys ADD COLUMN cache_shared INTEGER NOT NULL DEFAULT 0
    CHECK (cache_shared IN (0, 1));
"#;

const RESPONSE_CACHE_DOWN: &str = r#"
ALTER TABLE virtual_keys DROP COLUMN cache_shared;
ALTER TABLE virtual_keys DROP COLUMN cache_ttl_secs;
ALTER TABLE agents DROP COLUMN cache_sampled;
ALTER TABLE agents DROP COLUMN cache_ttl_secs;
"#;

/// Usage at scale: the hourly rollup of usage rows per virtual key,
/// agent, provider and model (see `store::rollup`), filled from the rows
/// already stored by the migration's hook (costs summed exactly, in Rust).
pub(crate) const USAGE_ROLLUP_UP: &str = r#"
CREATE TABLE usage_rollup (
    hour             TEXT NOT NULL,
    virtual_key_id   INTEGER NOT NULL DEFAULT 0,
    agent_id         INTEGER NOT NULL DEFAULT 0,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    agent_name       TEXT,
    virtual_key_name TEXT,
    requests         INTEGER NOT NULL DEFAULT 0,
    errors           INTEGER NOT NULL DEFAULT 0,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    cost_usd         TEXT NOT NULL DEFAULT '0',
    unpriced         INTEGER NOT NULL DEFAULT 0,
    estimated        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, virtual_key_id, agent_id, provider, model)
) STRICT;

CREATE INDEX usage_rollup_by_virtual_key ON usage_rollup (virtual_key_id, hour);
CREATE INDEX usage_rollup_by_agent ON usage_rollup (agent_id, hour);
CREATE INDEX usage_rollup_by_agent_name ON usage_rollup (agent_name);
"#;

pub(crate) const USAGE_ROLLUP_DOWN: &str = "DROP TABLE usage_rollup;";

/// The encryption key new values must be under, named in the database so
/// that every replica encrypts under the same key and none under a
/// retired one: `keys rotate` changes it in the transaction that
/// re-encrypts, and triggers refuse an API key or a virtual key written
/// under any other key, whichever process writes it.
const ACTIVE_KEY_UP: &str = r#"
CREATE TABLE encryption_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    active_key_id TEXT NOT NULL,
    changed_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TRIGGER api_key_inserted_under_the_active_key
BEFORE INSERT ON agent_llm_configs
WHEN NEW.api_key_encrypted IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'llmhost: retired encryption key')
    FROM encryption_state
    WHERE substr(NEW.api_key_encrypted, 1, length(active_key_id) + 12)
        <> 'llmhost:v2:' || active_key_id || ':';
END;

CREATE TRIGGER api_key_updated_under_the_active_key
BEFORE UPDATE OF api_key_encrypted ON agent_llm_configs
WHEN NEW.api_key_encrypted IS NOT NULL
    AND NEW.api_key_encrypted IS NOT OLD.api_key_encrypted
BEGIN
    SELECT RAISE(ABORT, 'llmhost: retired encryption key')
    FROM encryption_state
    WHERE substr(NEW.api_key_encrypted, 1, length(active_key_id) + 12)
        <> 'llmhost:v2:' || active_key_id || ':';
END;

CREATE TRIGGER virtual_key_hashed_under_the_active_key
BEFORE INSERT ON virtual_keys
BEGIN
    SELECT RAISE(ABORT, 'llmhost: retired encryption key')
    FROM encryption_state
    WHERE NEW.hash_key_id <> active_key_id;
END;
"#;

const ACTIVE_KEY_DOWN: &str = r#"
DROP TRIGGER virtual_key_hashed_under_the_active_key;
DROP TRIGGER api_key_updated_under_the_active_key;
DROP TRIGGER api_key_inserted_under_the_active_key;
DROP TABLE encryption_state;
"#;

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
        M::up(ONE_PRICE_UNIT_UP)
            .down(ONE_PRICE_UNIT_DOWN)
            .foreign_key_check()
            .comment("config prices in micro-dollars per million tokens, with cache prices"),
        M::up(ADMIN_TOKENS_UP)
            .down(ADMIN_TOKENS_DOWN)
            .comment("admin tokens"),
        M::up(SERVED_UP)
            .down(SERVED_DOWN)
            .comment("usage rows say how a call was served"),
        M::up(BALANCE_UP)
            .down(BALANCE_DOWN)
            .comment("load balancing and context-window fallback"),
        M::up(EXPERIMENTS_UP)
            .down(EXPERIMENTS_DOWN)
            .foreign_key_check()
            .comment("A/B experiments of agents"),
        M::up(RESPONSE_CACHE_UP)
            .down(RESPONSE_CACHE_DOWN)
            .comment("response cache settings of agents and virtual keys"),
        M::up_with_hook(USAGE_ROLLUP_UP, |tx: &rusqlite::Transaction<'_>| {
            super::rollup::backfill(&mut super::sql::Conn::sqlite(tx))
                .map_err(|err| rusqlite_migration::HookError::Hook(err.to_string()))
        })
        .down(USAGE_ROLLUP_DOWN)
        .comment("hourly usage rollup"),
        M::up(ACTIVE_KEY_UP)
            .down(ACTIVE_KEY_DOWN)
            .comment("the active encryption key, kept by every writer"),
    ])
}

/// The migration whose up step ends with [`super::rollup::backfill`], on
/// both engines.
pub(crate) const USAGE_ROLLUP: u32 = 11;

/// The same migrations in PostgreSQL's dialect, as (up, down).
pub(crate) fn postgres() -> &'static [(&'static str, &'static str)] {
    super::migrations_pg::MIGRATIONS
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 12;

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

    /// The schema version just before the balancing migration.
    const BEFORE_BALANCE: usize = 7;

    #[test]
    fn balancing_columns_go_up_with_defaults_and_come_down() {
        let migrations = super::migrations();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations.to_version(&mut conn, BEFORE_BALANCE).unwrap();
        conn.execute_batch(
            "INSERT INTO agents (id, name) VALUES (1, 'bot');
             INSERT INTO agent_llm_configs (id, agent_id, provider, model_name)
             VALUES (1, 1, 'openai', 'gpt-4o-mini');",
        )
        .unwrap();
        migrations
            .to_version(&mut conn, BEFORE_BALANCE + 1)
            .unwrap();
        let (balance, weight): (String, i64) = conn
            .query_row(
                "SELECT balance, weight FROM agents, agent_llm_configs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((balance.as_str(), weight), ("priority", 1));
        assert!(
            conn.execute("UPDATE agent_llm_configs SET weight = 0", [])
                .is_err()
        );
        assert!(
            conn.execute("UPDATE agents SET balance = 'random'", [])
                .is_err()
        );
        migrations.to_version(&mut conn, BEFORE_BALANCE).unwrap();
        assert!(
            conn.prepare("SELECT weight FROM agent_llm_configs")
                .is_err()
        );
    }

    /// The schema version before the experiments migration (renumbered at
    /// merges: change it here only).
    const BEFORE_EXPERIMENTS: usize = 8;

    #[test]
    fn experiments_keep_one_active_per_agent_and_go_down_cleanly() {
        let migrations = super::migrations();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations
            .to_version(&mut conn, BEFORE_EXPERIMENTS + 1)
            .unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn.execute_batch(
            "INSERT INTO agents (id, name) VALUES (1, 'bot');
             INSERT INTO experiments (id, agent_id, name, sticky) VALUES (1, 1, 'a', 'user');
             INSERT INTO experiment_variants (experiment_id, position, name, weight, provider,
                 model) VALUES (1, 0, 'control', 80, 'openai', 'gpt-4o-mini');",
        )
        .unwrap();
        let second = "INSERT INTO experiments (agent_id, name, sticky) VALUES (1, 'b', 'request')";
        assert!(conn.execute(second, []).is_err(), "two active experiments");
        conn.execute(
            "UPDATE experiments SET status = 'stopped', stopped_at = 'now' WHERE id = 1",
            [],
        )
        .unwrap();
        conn.execute(second, []).unwrap();
        assert!(
            conn.execute(
                "INSERT INTO experiment_variants (experiment_id, position, name, weight, \
                 provider, model) VALUES (1, 1, 'zero', 0, 'openai', 'gpt-4o')",
                [],
            )
            .is_err(),
            "a weight of 0"
        );
        conn.execute("DELETE FROM agents", []).unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM experiment_variants", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "an agent's experiments go with it");

        migrations
            .to_version(&mut conn, BEFORE_EXPERIMENTS)
            .unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'experiment%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
        migrations
            .to_version(&mut conn, BEFORE_EXPERIMENTS + 1)
            .unwrap();
    }

    fn config_prices(conn: &rusqlite::Connection) -> Vec<(i64, Option<String>)> {
        conn.prepare("SELECT id, prices_json FROM agent_llm_configs ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn custom_prices_survive_the_move_to_one_unit_and_back() {
        let migrations = super::migrations();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations.to_version(&mut conn, 4).unwrap();
        // As the store migrates: with foreign keys off.
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        conn.execute_batch(
            "INSERT INTO agents (id, name) VALUES (1, 'bot');
             INSERT INTO agent_llm_configs (id, agent_id, provider, model_name,
                 cost_per_1k_input_tokens, cost_per_1k_output_tokens, custom_pricing)
             VALUES (1, 1, 'openai', 'gpt-4o-mini', '0.0025', '0.01', 1),
                    (2, 1, 'openai', 'gpt-4o', '0.00015', '0.0006', 0),
                    (3, 1, 'openai', 'gpt-4o', '0.000000123', '12.5', 1);
             INSERT INTO usage_events (agent_id, agent_name, config_id, provider, model,
                 latency_ms, status)
             VALUES (1, 'bot', 1, 'openai', 'gpt-4o-mini', 5, 'ok');",
        )
        .unwrap();

        migrations.to_version(&mut conn, 5).unwrap();
        let prices = config_prices(&conn);
        let json = |text: &Option<String>| {
            text.as_deref()
                .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap())
        };
        assert_eq!(
            json(&prices[0].1).unwrap(),
            serde_json::json!({"input": "2.5", "output": "10", "cache_read": null,
                               "cache_write": null, "cache_write_hour": null})
        );
        assert_eq!(prices[1].1, None, "registry prices become the catalogue's");
        let third = json(&prices[2].1).unwrap();
        assert_eq!(
            (third["input"].as_str(), third["output"].as_str()),
            (Some("0.000123"), Some("12500"))
        );
        let config_of_usage: Option<i64> = conn
            .query_row("SELECT config_id FROM usage_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(config_of_usage, Some(1), "usage rows keep their config");

        migrations.to_version(&mut conn, 4).unwrap();
        let rows: Vec<(String, String, bool)> = conn
            .prepare(
                "SELECT cost_per_1k_input_tokens, cost_per_1k_output_tokens, custom_pricing \
                 FROM agent_llm_configs ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0], ("0.0025".into(), "0.01".into(), true));
        assert_eq!(rows[1], ("0".into(), "0".into(), false));
        assert_eq!(rows[2], ("0.000000123".into(), "12.5".into(), true));
    }

    /// The version before the response cache's migration.
    const BEFORE_RESPONSE_CACHE: usize = 9;

    #[test]
    fn response_cache_columns_default_to_off_and_go_back_down() {
        let migrations = super::migrations();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations
            .to_version(&mut conn, BEFORE_RESPONSE_CACHE)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO agents (id, name) VALUES (1, 'bot');
             INSERT INTO virtual_keys (name, key_hash, hash_key_id, key_hint)
             VALUES ('k', 'hash', 'h', '…abcd');",
        )
        .unwrap();
        migrations
            .to_version(&mut conn, BEFORE_RESPONSE_CACHE + 1)
            .unwrap();
        let agent: (Option<u32>, bool) = conn
            .query_row(
                "SELECT cache_ttl_secs, cache_sampled FROM agents",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(agent, (None, false));
        let key: (Option<u32>, bool) = conn
            .query_row(
                "SELECT cache_ttl_secs, cache_shared FROM virtual_keys",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(key, (None, false));
        let too_long = conn.execute("UPDATE agents SET cache_ttl_secs = 2592001", []);
        assert!(too_long.is_err(), "the TTL is checked");
        migrations
            .to_version(&mut conn, BEFORE_RESPONSE_CACHE)
            .unwrap();
        let names: i64 = conn
            .query_row("SELECT count(*) FROM agents WHERE name = 'bot'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(names, 1);
    }

    use crate::store::Store;
    use crate::store::sql::Value;
    use crate::store::testing::{Backend, both, database};

    both!(
        custom_prices_move_to_one_unit_and_back_on_both_engines,
        the_rollup_starts_from_the_rows_already_stored
    );

    /// Migration 11 rolls up the usage rows of an older database, costs
    /// summed exactly; down, the rollup goes and the rows stay.
    async fn the_rollup_starts_from_the_rows_already_stored(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_unmigrated(database(backend, dir.path()))
            .await
            .unwrap();
        store.migrate_to(super::USAGE_ROLLUP - 1).await.unwrap();
        store
            .execute_sql("INSERT INTO agents (name) VALUES ('bot')", vec![])
            .await
            .unwrap();
        for (cost, status, at) in [
            (Some("0.1"), "ok", "2025-03-01T10:05:00.000Z"),
            (
                Some("0.000000000000000001"),
                "ok",
                "2025-03-01T10:59:59.999Z",
            ),
            (None, "ok", "2025-03-01T10:30:00.000Z"),
            (Some("2"), "ok", "2025-03-01T11:00:00.000Z"),
        ] {
            store
                .execute_sql(
                    "INSERT INTO usage_events (agent_id, agent_name, provider, model, \
                     input_tokens, output_tokens, cost_usd, latency_ms, status, created_at) \
                     SELECT id, name, 'openai', 'gpt-4o', 10, 5, ?1, 3, ?2, ?3 FROM agents",
                    vec![cost.into(), status.into(), at.into()],
                )
                .await
                .unwrap();
        }
        store.migrate_to(super::USAGE_ROLLUP).await.unwrap();
        let rows = store
            .query_sql(
                "SELECT hour, requests, input_tokens, cost_usd, unpriced, agent_name \
                 FROM usage_rollup ORDER BY hour",
                vec![],
            )
            .await
            .unwrap();
        let rows: Vec<(String, i64, i64, String, i64, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.get(0).unwrap(),
                    r.get(1).unwrap(),
                    r.get(2).unwrap(),
                    r.get(3).unwrap(),
                    r.get(4).unwrap(),
                    r.get(5).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "2025-03-01T10:00:00.000Z".into(),
                    3,
                    30,
                    "0.100000000000000001".into(),
                    1,
                    "bot".into()
                ),
                (
                    "2025-03-01T11:00:00.000Z".into(),
                    1,
                    10,
                    "2".into(),
                    0,
                    "bot".into()
                ),
            ]
        );
        store.migrate_to(super::USAGE_ROLLUP - 1).await.unwrap();
        assert!(
            !store
                .table_names()
                .await
                .unwrap()
                .contains(&"usage_rollup".to_owned())
        );
        let kept: Vec<_> = store
            .query_sql("SELECT id FROM usage_events", vec![])
            .await
            .unwrap();
        assert_eq!(kept.len(), 4);
    }

    /// The price migration, the one that computes, through the store on
    /// either engine.
    async fn custom_prices_move_to_one_unit_and_back_on_both_engines(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_unmigrated(database(backend, dir.path()))
            .await
            .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 0);
        store.migrate_to(4).await.unwrap();
        store
            .execute_sql("INSERT INTO agents (name) VALUES ('bot')", vec![])
            .await
            .unwrap();
        for (input, output, custom) in [
            ("0.0025", "0.01", 1),
            ("0.00015", "0.0006", 0),
            ("0.000000123", "12.5", 1),
        ] {
            store
                .execute_sql(
                    "INSERT INTO agent_llm_configs (agent_id, provider, model_name, \
                     cost_per_1k_input_tokens, cost_per_1k_output_tokens, custom_pricing) \
                     SELECT id, 'openai', 'gpt-4o', ?1, ?2, ?3 FROM agents",
                    vec![input.into(), output.into(), Value::Integer(custom)],
                )
                .await
                .unwrap();
        }
        store.migrate_to(5).await.unwrap();
        let rows = store
            .query_sql(
                "SELECT prices_json FROM agent_llm_configs ORDER BY id",
                vec![],
            )
            .await
            .unwrap();
        let json: Vec<Option<serde_json::Value>> = rows
            .iter()
            .map(|r| {
                r.get::<_, Option<String>>(0)
                    .unwrap()
                    .map(|t| serde_json::from_str(&t).unwrap())
            })
            .collect();
        assert_eq!(
            json[0],
            Some(
                serde_json::json!({"input": "2.5", "output": "10", "cache_read": null,
                                    "cache_write": null, "cache_write_hour": null})
            )
        );
        assert_eq!(json[1], None);
        let third = json[2].as_ref().unwrap();
        assert_eq!(
            (third["input"].as_str(), third["output"].as_str()),
            (Some("0.000123"), Some("12500"))
        );
        store.migrate_to(4).await.unwrap();
        let rows = store
            .query_sql(
                "SELECT cost_per_1k_input_tokens, cost_per_1k_output_tokens, custom_pricing \
                 FROM agent_llm_configs ORDER BY id",
                vec![],
            )
            .await
            .unwrap();
        let rows: Vec<(String, String, bool)> = rows
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
            .collect();
        assert_eq!(rows[0], ("0.0025".into(), "0.01".into(), true));
        assert_eq!(rows[1], ("0".into(), "0".into(), false));
        assert_eq!(rows[2], ("0.000000123".into(), "12.5".into(), true));
        store.migrate_to(super::SCHEMA_VERSION).await.unwrap();
        store.migrate_to(0).await.unwrap();
        assert!(store.table_names().await.unwrap().is_empty());
    }
}
