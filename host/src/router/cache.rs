//! The response cache: a successful, complete answer is kept under an
//! exact-match key of the request that made it, and an identical request
//! made while it is fresh is served from it without a provider call.
//!
//! Whether a call uses the cache is the plan's [`CachePolicy`] (an
//! agent's or a virtual key's, set by whoever builds the plan); the
//! router consults it before trying any route, so plain targets,
//! agents' calls and the gateway behave alike. The key is the request as
//! its first route would send it, with the scope it may be shared in
//! (see [`CacheKey`]). A hit costs nothing: its usage row has no tokens,
//! a cost of 0, `served.cache_hit` and the stored answer's cost as
//! `served.saved_usd`.
//!
//! Answers are kept in process, bounded by their bytes, least recently
//! used first out; or, with shared state ([`crate::shared`]), in Redis,
//! one key per answer with the policy's TTL as the key's (Redis's own
//! `maxmemory` policy bounds them), so an answer made through one replica
//! serves every replica. A Redis that cannot be reached is a miss (and an
//! answer not stored): the cache never fails a call.

use super::{Attempt, CallTags, Plan, Route, Routed, shape};
use crate::host::ChatOutcome;
use crate::store::UsageOutcome;
use crate::types::{ChatRequest, ChatResponse, Chunk, ContentPart, FinishReason, ToolCall, Usage};
use hashlink::LinkedHashMap;
use llmhost_registry::rust_decimal::Decimal;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default bound of the in-process store: 64 MiB of answers.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// How a call may use the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a stored answer is served.
    pub ttl: Duration,
    /// Whether requests that sample (temperature above 0, or unset: the
    /// vendors' defaults sample) are cached too. Off, only requests at
    /// temperature 0 are: the operator must opt in to serving one draw
    /// of a sampled answer again.
    pub sampled: bool,
    /// Whether answers are shared beyond the virtual key that made them
    /// (still within the agent, for an agent's calls).
    pub shared: bool,
    /// Whether a stored answer may serve the call (`cache-control:
    /// no-cache` turns it off; the fresh answer is still stored).
    pub read: bool,
    /// Whether the call's answer is stored (`cache-control: no-store`
    /// turns it and `read` off).
    pub write: bool,
}

impl CachePolicy {
    /// Answers kept for `ttl`, only for requests at temperature 0, within
    /// the caller's virtual key.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sampled: false,
            shared: false,
            read: true,
            write: true,
        }
    }

    /// Applies a request's `cache-control` header: `no-store` neither
    /// reads nor stores, `no-cache` stores without reading.
    pub fn directives(mut self, cache_control: &str) -> Self {
        for directive in cache_control.split(',') {
            match directive.trim().to_ascii_lowercase().as_str() {
                "no-store" => {
                    self.read = false;
                    self.write = false;
                }
                "no-cache" => self.read = false,
                _ => {}
            }
        }
        self
    }
}

impl crate::store::Agent {
    /// The agent's response cache policy: its TTL and whether sampled
    /// requests are cached; answers stay within the caller's virtual key.
    pub fn cache_policy(&self) -> Option<CachePolicy> {
        let ttl = self.cache_ttl_secs?;
        Some(CachePolicy {
            sampled: self.cache_sampled,
            ..CachePolicy::new(Duration::from_secs(u64::from(ttl)))
        })
    }
}

/// The policy of a gateway call: a virtual key with a TTL caches its
/// calls (its TTL wins over the agent's), a key's `cache_shared` lets
/// its answers serve other keys, only an agent caches sampled requests,
/// and the request's `cache-control` has the last word.
pub fn gateway_policy(
    agent: Option<CachePolicy>,
    key_ttl_secs: Option<u32>,
    key_shared: bool,
    cache_control: Option<&str>,
) -> Option<CachePolicy> {
    let mut policy = match (agent, key_ttl_secs) {
        (agent, Some(ttl)) => CachePolicy {
            ttl: Duration::from_secs(u64::from(ttl)),
            sampled: agent.is_some_and(|a| a.sampled),
            ..CachePolicy::new(Duration::ZERO)
        },
        (Some(agent), None) => agent,
        (None, None) => return None,
    };
    policy.shared = key_shared;
    Some(match cache_control {
        Some(value) => policy.directives(value),
        None => policy,
    })
}

/// What the cache did for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from a stored answer.
    Hit,
    /// Looked up, not found: a provider answered (and the answer is
    /// stored if it completes).
    Miss,
    /// Not looked up: the request samples and the policy does not cache
    /// those, or the caller asked for a fresh answer.
    Bypass,
}

impl CacheStatus {
    /// `hit`, `miss` or `bypass`, as the `x-llmhost-cache` header says.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The key of a stored answer: the BLAKE3 hash of [`KeyMaterial`]
/// serialised as JSON (its fields in their declared order, so one request
/// has one text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey([u8; 32]);

/// Everything that decides the answer, and the scope it may be shared in.
/// Destructuring [`ChatRequest`] without `..` makes a new request field a
/// compile error here until it is put in or left out on purpose.
#[derive(Serialize)]
struct KeyMaterial<'a> {
    /// Changes when the meaning of the key does.
    format: u32,
    /// The caller's virtual key: a hit never crosses keys, unless the
    /// policy is `shared`.
    virtual_key: Option<i64>,
    /// The agent: its configs may share routes with another's, but its
    /// answers are its own.
    agent: Option<i64>,
    /// The route that would answer first, as configured: a changed
    /// config (provider, model, base URL, defaults) misses.
    provider: &'a str,
    base_url: Option<&'a str>,
    /// The route's model, which replaces the request's.
    model: &'a str,
    /// A stream is replayed as its chunks, a complete answer as itself:
    /// each is kept as it was made.
    streamed: bool,
    /// The conversation, system messages included (they are messages
    /// here), with names, images, tool calls and results, and prompt
    /// cache breakpoints (they change the billed usage reported).
    messages: &'a [crate::types::Message],
    /// Sampling and length: after the route's defaults are applied.
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    top_p: Option<f32>,
    stop: &'a [String],
    tools: &'a [crate::types::ToolDefinition],
    tool_choice: &'a Option<crate::types::ToolChoice>,
    response_format: &'a Option<crate::types::ResponseFormat>,
    reasoning: &'a Option<crate::types::ReasoningConfig>,
    /// As the caller wrote it: an equal object written differently
    /// misses, never the reverse.
    vendor_params: Option<&'a str>,
}

/// The key of `request` sent along `route` for `plan`'s caller. Not in
/// it: the request id (new on every call), the caller's API key (the
/// scope stands for who may share), the end-user id `user` (it is for
/// the vendor's abuse monitoring and does not change the answer), and
/// the request's own model (the route's replaces it).
pub(crate) fn key(plan: &Plan, route: &Route, request: &ChatRequest, streamed: bool) -> CacheKey {
    let shaped = shape(route, request);
    let ChatRequest {
        model: _,
        messages,
        temperature,
        max_tokens,
        top_p,
        stop,
        tools,
        tool_choice,
        response_format,
        reasoning,
        user: _,
        vendor_params,
    } = &shaped;
    let policy = plan.cache.unwrap_or(CachePolicy::new(Duration::ZERO));
    let material = KeyMaterial {
        format: 1,
        virtual_key: if policy.shared {
            None
        } else {
            plan.tags.virtual_key.as_ref().map(|(id, _)| *id)
        },
        agent: plan.tags.agent.as_ref().map(|(id, _)| *id),
        provider: &route.target.provider,
        base_url: route.target.base_url.as_deref(),
        model: &route.model,
        streamed,
        messages,
        temperature: *temperature,
        max_tokens: *max_tokens,
        top_p: *top_p,
        stop,
        tools,
        tool_choice,
        response_format,
        reasoning,
        vendor_params: vendor_params.as_deref(),
    };
    // Serialising plain data to a Vec does not fail; should it, the
    // hash of nothing still keys only this request's scope and route.
    let text = serde_json::to_vec(&material).unwrap_or_default();
    CacheKey(*blake3::hash(&text).as_bytes())
}

/// An answer as stored, with what the call that made it recorded.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Stored {
    pub provider: String,
    pub model: String,
    pub config_id: Option<i64>,
    /// What the answer cost when it was made: a hit's saving.
    pub cost_usd: Option<Decimal>,
    pub answer: Answer,
}

/// A complete answer, or a stream's chunks in order.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) enum Answer {
    Complete(Box<ChatResponse>),
    Stream(Vec<Chunk>),
}

fn tool_call_bytes(call: &ToolCall) -> usize {
    std::mem::size_of::<ToolCall>() + call.id.len() + call.name.len() + call.arguments.len()
}

fn part_bytes(part: &ContentPart) -> usize {
    std::mem::size_of::<ContentPart>()
        + match part {
            ContentPart::ToolUse(call) => tool_call_bytes(call) - std::mem::size_of::<ToolCall>(),
            other => other.answer_bytes(),
        }
}

fn finish_bytes(reason: &FinishReason) -> usize {
    match reason {
        FinishReason::Other(text) => text.len(),
        _ => 0,
    }
}

fn chunk_bytes(chunk: &Chunk) -> usize {
    let extra = match chunk {
        Chunk::Start(start) => start.request_id.as_ref().map_or(0, String::len),
        Chunk::Finish(reason) => finish_bytes(reason),
        _ => 0,
    };
    std::mem::size_of::<Chunk>() + chunk.answer_bytes() + extra
}

impl Stored {
    /// The memory the entry holds: its text, tool calls and chunks, and
    /// the fixed size of each part.
    pub(crate) fn bytes(&self) -> usize {
        let answer = match &self.answer {
            Answer::Complete(response) => {
                std::mem::size_of::<ChatResponse>()
                    + response.id.len()
                    + response.model.len()
                    + response.content.len()
                    + response.reasoning_content.as_ref().map_or(0, String::len)
                    + response.request_id.as_ref().map_or(0, String::len)
                    + finish_bytes(&response.finish_reason)
                    + response
                        .tool_calls
                        .iter()
                        .map(tool_call_bytes)
                        .sum::<usize>()
                    + response.parts.iter().map(part_bytes).sum::<usize>()
            }
            Answer::Stream(chunks) => chunks.iter().map(chunk_bytes).sum(),
        };
        std::mem::size_of::<Slot>()
            + std::mem::size_of::<CacheKey>()
            + self.provider.len()
            + self.model.len()
            + answer
    }
}

/// What the cache has done since it started, and holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    /// Entries removed to make room for others (expired ones not
    /// counted).
    pub evictions: u64,
    /// Bytes held (see the module doc for what is counted).
    pub bytes: u64,
    pub entries: u64,
    /// The bound of `bytes`.
    pub max_bytes: u64,
}

struct Slot {
    stored: Arc<Stored>,
    expires: Instant,
    bytes: usize,
}

/// Answers in process memory: at most `max_bytes`, least recently used
/// out first, expired ones dropped when read and when room is needed.
pub(crate) struct MemoryStore {
    /// Least recently used first.
    entries: LinkedHashMap<CacheKey, Slot>,
    bytes: usize,
    max_bytes: usize,
    evictions: u64,
}

impl MemoryStore {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            entries: LinkedHashMap::new(),
            bytes: 0,
            max_bytes,
            evictions: 0,
        }
    }

    pub(crate) fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Arc<Stored>> {
        let expired = self.entries.get(key)?.expires <= now;
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.to_back(key);
        self.entries.get(key).map(|slot| slot.stored.clone())
    }

    /// Stores `stored` until `expires`, making room for it; an answer
    /// larger than the whole store is not kept.
    pub(crate) fn put(
        &mut self,
        key: CacheKey,
        stored: Arc<Stored>,
        expires: Instant,
        now: Instant,
    ) {
        let bytes = stored.bytes();
        self.remove(&key);
        if bytes > self.max_bytes {
            return;
        }
        if self.bytes + bytes > self.max_bytes {
            let expired: Vec<CacheKey> = self
                .entries
                .iter()
                .filter(|(_, slot)| slot.expires <= now)
                .map(|(key, _)| *key)
                .collect();
            for key in &expired {
                self.remove(key);
            }
        }
        while self.bytes + bytes > self.max_bytes {
            let Some((_, slot)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= slot.bytes;
            self.evictions += 1;
        }
        self.bytes += bytes;
        self.entries.insert(
            key,
            Slot {
                stored,
                expires,
                bytes,
            },
        );
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.entries.remove(key) {
            self.bytes -= slot.bytes;
        }
    }

    fn stats(&self) -> (u64, u64, u64) {
        (self.bytes as u64, self.entries.len() as u64, self.evictions)
    }
}

/// Where answers are kept.
enum Backend {
    Memory(Mutex<MemoryStore>),
    Redis(Arc<crate::shared::Redis>),
}

/// The cache routed calls share: the store and its counters.
pub(crate) struct ResponseCache {
    backend: Backend,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
}

impl ResponseCache {
    /// An in-process cache of at most `max_bytes`.
    pub(crate) fn in_memory(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            backend: Backend::Memory(Mutex::new(MemoryStore::new(max_bytes))),
            max_bytes,
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            bypasses: AtomicU64::default(),
        })
    }

    /// A cache in `redis`, shared by every replica; answers larger than
    /// `max_bytes` are not stored.
    pub(crate) fn in_redis(redis: Arc<crate::shared::Redis>, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            backend: Backend::Redis(redis),
            max_bytes,
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            bypasses: AtomicU64::default(),
        })
    }

    async fn get(&self, key: &CacheKey) -> Option<Arc<Stored>> {
        match &self.backend {
            Backend::Memory(store) => store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key, Instant::now()),
            Backend::Redis(redis) => {
                let text = crate::shared::cache::get(redis, &key.0).await.ok()??;
                // What does not parse (another version's format) misses.
                serde_json::from_slice(&text).ok().map(Arc::new)
            }
        }
    }

    fn put(&self, key: CacheKey, stored: Stored, ttl: Duration) {
        let now = Instant::now();
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        match &self.backend {
            Backend::Memory(store) => store.lock().unwrap_or_else(|e| e.into_inner()).put(
                key,
                Arc::new(stored),
                expires,
                now,
            ),
            Backend::Redis(redis) => {
                if stored.bytes() > self.max_bytes {
                    return;
                }
                let Ok(text) = serde_json::to_vec(&stored) else {
                    return;
                };
                crate::shared::cache::put(redis.clone(), key.0, text, ttl);
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let (bytes, entries, evictions) = match &self.backend {
            Backend::Memory(store) => store.lock().unwrap_or_else(|e| e.into_inner()).stats(),
            // Held in Redis, which counts them itself.
            Backend::Redis(_) => (0, 0, 0),
        };
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bypasses: self.bypasses.load(Ordering::Relaxed),
            evictions,
            bytes,
            entries,
            max_bytes: self.max_bytes as u64,
        }
    }
}

/// What the cache decided for one call, before any route is tried.
pub(crate) struct Lookup {
    pub(crate) status: Option<CacheStatus>,
    /// Where the call's answer is stored: `None` when it is not.
    write: Option<(CacheKey, Duration)>,
    /// The answer that serves the call.
    hit: Option<Arc<Stored>>,
    started: tokio::time::Instant,
}

impl Lookup {
    /// Looks `request` up under `plan`'s policy.
    pub(crate) async fn new(
        cache: &ResponseCache,
        plan: &Plan,
        request: &ChatRequest,
        streamed: bool,
    ) -> Self {
        let started = tokio::time::Instant::now();
        let mut lookup = Self {
            status: None,
            write: None,
            hit: None,
            started,
        };
        let (Some(policy), Some(first)) = (plan.cache, plan.routes.first()) else {
            return lookup;
        };
        let temperature = request.temperature.or(first.defaults.temperature);
        let deterministic = temperature.is_some_and(|t| t == 0.0);
        if !(deterministic || policy.sampled) || !(policy.read || policy.write) {
            cache.bypasses.fetch_add(1, Ordering::Relaxed);
            lookup.status = Some(CacheStatus::Bypass);
            return lookup;
        }
        let key = key(plan, first, request, streamed);
        if policy.write {
            lookup.write = Some((key, policy.ttl));
        }
        if !policy.read {
            cache.bypasses.fetch_add(1, Ordering::Relaxed);
            lookup.status = Some(CacheStatus::Bypass);
            return lookup;
        }
        lookup.hit = cache.get(&key).await;
        lookup.status = Some(if lookup.hit.is_some() {
            cache.hits.fetch_add(1, Ordering::Relaxed);
            CacheStatus::Hit
        } else {
            cache.misses.fetch_add(1, Ordering::Relaxed);
            CacheStatus::Miss
        });
        lookup
    }

    /// The stored answer that serves the call, with the accounting of its
    /// usage row: what the original recorded, at no cost.
    pub(super) fn hit(&self, tags: &CallTags, streamed: bool) -> Option<(Arc<Stored>, Attempt)> {
        let stored = self.hit.clone()?;
        let attempt = Attempt {
            tags: tags.clone(),
            config_id: stored.config_id,
            provider: stored.provider.clone(),
            model: stored.model.clone(),
            custom_prices: None,
            started: self.started,
            number: 1,
            fallback: false,
            streamed,
            input_estimate: 0,
            choice: None,
            cache_hit: Some(stored.cost_usd),
        };
        Some((stored, attempt))
    }

    /// The routed answer of a hit on a complete answer, its usage row
    /// recorded.
    pub(crate) fn serve(&self, state: &super::RoutingState, tags: &CallTags) -> Option<Routed> {
        let (stored, attempt) = self.hit(tags, false)?;
        let Answer::Complete(response) = &stored.answer else {
            return None;
        };
        state.sink.record(attempt.event(
            Some(&Usage::default()),
            Some(Decimal::ZERO),
            None,
            UsageOutcome::Ok,
        ));
        Some(Routed {
            outcome: ChatOutcome {
                provider: stored.provider.clone(),
                response: (**response).clone(),
                cost_usd: Some(Decimal::ZERO),
                latency: self.started.elapsed(),
            },
            route: 0,
            provider: stored.provider.clone(),
            model: stored.model.clone(),
            config_id: stored.config_id,
            fallback: false,
            attempts: 0,
            request_id: tags.request_id.clone().unwrap_or_default(),
            cache: Some(CacheStatus::Hit),
        })
    }

    /// Stores a provider's complete answer, if the call stores.
    pub(crate) fn keep(&self, cache: &ResponseCache, routed: &Routed) {
        if let Some((key, ttl)) = self.write {
            cache.put(
                key,
                Stored {
                    provider: routed.provider.clone(),
                    model: routed.model.clone(),
                    config_id: routed.config_id,
                    cost_usd: routed.outcome.cost_usd,
                    answer: Answer::Complete(Box::new(routed.outcome.response.clone())),
                },
                ttl,
            );
        }
    }

    /// A recorder of the stream that answers the call, if it is stored.
    pub(crate) fn recorder(&self, cache: &Arc<ResponseCache>) -> Option<Recorder> {
        let (key, ttl) = self.write?;
        Some(Recorder {
            cache: cache.clone(),
            key,
            ttl,
            chunks: Vec::new(),
            bytes: 0,
            finished: false,
        })
    }
}

/// The chunks of a stream on their way to the caller, stored once the
/// stream ends properly: never an error, nor a stream cut short.
pub(crate) struct Recorder {
    cache: Arc<ResponseCache>,
    key: CacheKey,
    ttl: Duration,
    chunks: Vec<Chunk>,
    bytes: usize,
    /// Whether the vendor said why the answer ended.
    finished: bool,
}

impl Recorder {
    /// Takes a copy of `chunk`; `false` once the stream has grown past
    /// what the cache can hold (then it is not stored).
    pub(crate) fn note(&mut self, chunk: &Chunk) -> bool {
        self.bytes += chunk_bytes(chunk);
        if self.bytes > self.cache.max_bytes {
            return false;
        }
        self.finished |= matches!(chunk, Chunk::Finish(_));
        self.chunks.push(chunk.clone());
        true
    }

    /// Stores the stream, which ended without an error.
    pub(super) fn keep(self, attempt: &Attempt, cost_usd: Option<Decimal>) {
        if !self.finished {
            return;
        }
        self.cache.put(
            self.key,
            Stored {
                provider: attempt.provider.clone(),
                model: attempt.model.clone(),
                config_id: attempt.config_id,
                cost_usd,
                answer: Answer::Stream(self.chunks),
            },
            self.ttl,
        );
    }
}

/// Where a routed stream's chunks come from: a provider, or the cache.
// One per routed stream, never in a collection: boxing the live stream
// would cost an allocation per stream for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Source {
    Live(crate::host::ChatStream),
    /// A stored stream; its chunks are in the routed stream's buffer.
    Replay(Replay),
}

/// What a replayed stream reports: the original's usage and finish.
pub(crate) struct Replay {
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    started: tokio::time::Instant,
}

impl Replay {
    /// The stored chunks to replay and what they report.
    pub(crate) fn of(stored: &Stored, started: tokio::time::Instant) -> Option<(Self, Vec<Chunk>)> {
        let Answer::Stream(chunks) = &stored.answer else {
            return None;
        };
        let mut replay = Self {
            usage: None,
            finish: None,
            started,
        };
        for chunk in chunks {
            match chunk {
                Chunk::Usage(usage) => replay.usage = Some(*usage),
                Chunk::Finish(reason) => replay.finish = Some(reason.clone()),
                _ => {}
            }
        }
        Some((replay, chunks.clone()))
    }
}

impl Source {
    pub(crate) async fn next(&mut self) -> Option<Result<Chunk, crate::Error>> {
        match self {
            Source::Live(stream) => stream.next().await,
            Source::Replay(_) => None,
        }
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        match self {
            Source::Live(stream) => stream.usage(),
            Source::Replay(replay) => replay.usage,
        }
    }

    pub(crate) fn finish_reason(&self) -> Option<&FinishReason> {
        match self {
            Source::Live(stream) => stream.finish_reason(),
            Source::Replay(replay) => replay.finish.as_ref(),
        }
    }

    pub(crate) fn cost_usd(&self) -> Option<Decimal> {
        match self {
            Source::Live(stream) => stream.cost_usd(),
            Source::Replay(_) => Some(Decimal::ZERO),
        }
    }

    pub(crate) fn price(&self, usage: &Usage) -> Option<Decimal> {
        match self {
            Source::Live(stream) => stream.price(usage),
            Source::Replay(_) => Some(Decimal::ZERO),
        }
    }

    pub(crate) fn time_to_first_token(&self) -> Option<Duration> {
        match self {
            Source::Live(stream) => stream.time_to_first_token(),
            Source::Replay(_) => None,
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        match self {
            Source::Live(stream) => stream.elapsed(),
            Source::Replay(replay) => replay.started.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StreamStart;

    fn stream_of(text: &str) -> Arc<Stored> {
        Arc::new(Stored {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            config_id: None,
            cost_usd: Some(Decimal::new(1, 3)),
            answer: Answer::Stream(vec![
                Chunk::Start(StreamStart {
                    id: "chatcmpl-1".into(),
                    model: "gpt-4o-mini".into(),
                    rate_limits: None,
                    request_id: Some("req-1".into()),
                }),
                Chunk::Text(text.to_owned()),
                Chunk::Finish(FinishReason::Stop),
                Chunk::Usage(Usage::default()),
            ]),
        })
    }

    fn key_of(n: u64) -> CacheKey {
        CacheKey(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn an_entry_counts_its_text_and_chunks() {
        let small = stream_of("x").bytes();
        let large = stream_of(&"x".repeat(10_000)).bytes();
        assert_eq!(large - small, 9_999);
        assert!(small > 4 * std::mem::size_of::<Chunk>());
    }

    #[test]
    fn a_flood_of_large_answers_stays_within_the_bound_least_recent_out_first() {
        let entry = stream_of(&"a".repeat(100_000)).bytes();
        let max = entry * 10 + entry / 2;
        let mut store = MemoryStore::new(max);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for n in 0..10 {
            store.put(key_of(n), stream_of(&"a".repeat(100_000)), later, now);
        }
        assert_eq!(store.entries.len(), 10);
        // Touched, entry 0 becomes the most recent: 1 goes first.
        assert!(store.get(&key_of(0), now).is_some());
        for n in 10..500 {
            // Distinct texts of distinct sizes.
            let text = format!("{n}").repeat(30_000 + (n as usize % 7) * 1_000);
            store.put(key_of(n), stream_of(&text), later, now);
            assert!(
                store.bytes <= max,
                "{} bytes held, bound {max}",
                store.bytes
            );
            let counted: usize = store.entries.values().map(|slot| slot.bytes).sum();
            assert_eq!(counted, store.bytes);
            if n == 10 {
                assert!(store.get(&key_of(1), now).is_none(), "least recent out");
                assert!(store.get(&key_of(0), now).is_some(), "recently used stays");
            }
        }
        assert!(store.evictions > 400);
        let newest = store.get(&key_of(499), now).unwrap();
        assert_eq!(
            *newest,
            *stream_of(&"499".repeat(30_000 + (499 % 7) * 1_000))
        );
    }

    #[test]
    fn expired_entries_go_when_read_and_before_live_ones_when_room_is_needed() {
        let entry = stream_of("hello").bytes();
        let mut store = MemoryStore::new(entry * 3);
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(60);
        store.put(key_of(1), stream_of("hello"), later, now);
        store.put(key_of(2), stream_of("hello"), soon, now);
        store.put(key_of(3), stream_of("hello"), later, now);
        let after = now + Duration::from_secs(2);
        store.put(key_of(4), stream_of("hello"), later, after);
        assert!(
            store.get(&key_of(1), after).is_some(),
            "the expired one made room"
        );
        assert!(store.get(&key_of(2), after).is_none());
        assert_eq!(store.evictions, 0);
        assert!(store.get(&key_of(3), later).is_none(), "expired when read");
        assert_eq!(store.entries.len(), 2);
    }

    #[test]
    fn an_answer_larger_than_the_store_is_not_kept() {
        let mut store = MemoryStore::new(1_000);
        let now = Instant::now();
        store.put(
            key_of(1),
            stream_of(&"x".repeat(2_000)),
            now + Duration::from_secs(5),
            now,
        );
        assert_eq!((store.bytes, store.entries.len()), (0, 0));
    }

    #[test]
    fn the_key_holds_what_changes_the_answer_and_nothing_else() {
        use crate::host::Target;
        use crate::types::Message;
        let plan = |key: Option<i64>, shared: bool| {
            let mut plan = Plan::single(Route::new(Target::new("openai"), "gpt-4o-mini"));
            plan.tags.virtual_key = key.map(|id| (id, format!("k{id}")));
            plan.tags.request_id = Some(format!("req-{}", key.unwrap_or_default()));
            plan.cache = Some(CachePolicy {
                shared,
                ..CachePolicy::new(Duration::from_secs(60))
            });
            plan
        };
        let base = ChatRequest::new("ignored", vec![Message::user("hi")]);
        let of = |plan: &Plan, request: &ChatRequest| key(plan, &plan.routes[0], request, false);
        let one = of(&plan(Some(1), false), &base);
        let changed = [
            ChatRequest {
                temperature: Some(0.5),
                ..base.clone()
            },
            ChatRequest {
                top_p: Some(0.5),
                ..base.clone()
            },
            ChatRequest {
                max_tokens: Some(5),
                ..base.clone()
            },
            ChatRequest {
                stop: vec!["x".into()],
                ..base.clone()
            },
            ChatRequest {
                vendor_params: Some(r#"{"seed":1}"#.into()),
                ..base.clone()
            },
            ChatRequest::new("ignored", vec![Message::user("hi!")]),
        ];
        for request in &changed {
            assert_ne!(of(&plan(Some(1), false), request), one, "{request:?}");
        }
        let p = plan(Some(1), false);
        assert_ne!(key(&p, &p.routes[0], &base, true), one, "streamed apart");
        assert_ne!(of(&plan(Some(2), false), &base), one, "another key");
        // Neither the end user, the request's model nor the request id.
        let same = ChatRequest {
            user: Some("someone".into()),
            model: "other".into(),
            ..base.clone()
        };
        assert_eq!(of(&plan(Some(1), false), &same), one);
        // Shared keys share one scope.
        assert_eq!(
            of(&plan(Some(1), true), &base),
            of(&plan(Some(2), true), &base)
        );
    }

    #[test]
    fn cache_control_directives() {
        let policy = CachePolicy::new(Duration::from_secs(60));
        let no_cache = policy.directives("No-Cache");
        assert!(!no_cache.read && no_cache.write);
        let no_store = policy.directives("max-age=0, no-store");
        assert!(!no_store.read && !no_store.write);
        assert_eq!(policy.directives("max-age=60"), policy);
    }
}
