//! The data of one request's store: an empty WASI context (no files, no
//! environment, no sockets), the HTTP gate, limits and CPU accounting.
//!
//! Every limit holds per instance, whatever the component is made of: one
//! memory budget summed over all its linear memories and tables, a bounded
//! resource table, and a CPU budget that also counts the host's tokenizer
//! work done for the guest.

use super::bindings::{v0_1, v0_2};
use super::gate::RequestGate;
use super::tokenizer::UnknownEncoding;
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Tokenizer input counted on the calling worker rather than on the
/// blocking pool: at tiktoken's speed (about 20 MiB/s) at most some 50 µs
/// of work, less than the hand-off to another thread costs under load.
const INLINE_TOKENIZER_BYTES: usize = 1 << 10;

/// Per-request store data.
pub struct RequestState {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) gate: RequestGate,
    pub(super) limits: MemoryLimiter,
    pub(super) cpu: GuestClock,
    pub(super) cpu_budget: Duration,
    pub(super) cpu_exceeded: bool,
    tokenizer: TokenizerBudget,
    /// Set when a tokenizer call went over its limit: (limit, scope).
    pub(super) tokenizer_exceeded: Option<(usize, &'static str)>,
}

/// What the guest may still ask the host's tokenizer to read.
struct TokenizerBudget {
    per_call: usize,
    per_request: usize,
    used: usize,
}

/// Time during which guest code was running: started when control enters
/// the guest (a call, or a host function returning), stopped when it leaves
/// (a return, or a host function being called). Waiting inside a host
/// function (network I/O) therefore never counts.
///
/// A request crosses the boundary dozens of times, so the clock reads the
/// coarse monotonic clock (a few nanoseconds, millisecond resolution). A
/// stretch shorter than the resolution is counted as zero or one tick in
/// proportion to its length, so the sum stays right on average.
#[derive(Debug, Default)]
pub struct GuestClock {
    used_ns: u64,
    running_since_ns: Option<u64>,
}

fn coarse_now_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

impl GuestClock {
    pub(super) fn resume(&mut self) {
        self.running_since_ns = Some(coarse_now_ns());
    }

    pub(super) fn pause(&mut self) {
        if let Some(since) = self.running_since_ns.take() {
            self.used_ns += coarse_now_ns().saturating_sub(since);
        }
    }

    /// Adds time the host spent working for the guest.
    pub(super) fn charge(&mut self, spent: Duration) {
        self.used_ns = self
            .used_ns
            .saturating_add(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Guest time so far, including the current stretch.
    pub(super) fn used(&self) -> Duration {
        let current = self
            .running_since_ns
            .map_or(0, |since| coarse_now_ns().saturating_sub(since));
        Duration::from_nanos(self.used_ns + current)
    }
}

impl RequestState {
    pub(super) fn new(gate: RequestGate, limits: &super::Limits) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table,
            gate,
            limits: MemoryLimiter::new(limits.memory_bytes),
            cpu: GuestClock::default(),
            cpu_budget: limits.cpu_time,
            cpu_exceeded: false,
            tokenizer: TokenizerBudget {
                per_call: limits.max_tokenizer_bytes_per_call,
                per_request: limits.max_tokenizer_bytes_per_request,
                used: 0,
            },
            tokenizer_exceeded: None,
        }
    }

    /// Counts `texts` off the async workers (inline when they are short),
    /// charging the time to the guest's CPU budget. Over a size limit or the budget, the guest is
    /// stopped (a trap the instance reports as that limit).
    async fn tokenize(
        &mut self,
        encoding: String,
        texts: Vec<String>,
    ) -> wasmtime::Result<Vec<Result<u32, UnknownEncoding>>> {
        let bytes: usize = texts.iter().map(String::len).sum();
        let budget = &mut self.tokenizer;
        if bytes > budget.per_call {
            self.tokenizer_exceeded = Some((budget.per_call, "call"));
            return Err(wasmtime::format_err!(
                "tokenizer input over the per-call limit"
            ));
        }
        budget.used = budget.used.saturating_add(bytes);
        if budget.used > budget.per_request {
            self.tokenizer_exceeded = Some((budget.per_request, "request"));
            return Err(wasmtime::format_err!(
                "tokenizer input over the per-request limit"
            ));
        }
        let work = move || {
            let started = thread_cpu_time();
            let counts: Vec<_> = texts
                .iter()
                .map(|text| super::tokenizer::count(&encoding, text))
                .collect();
            (counts, thread_cpu_time().saturating_sub(started))
        };
        // A short text is counted in a few microseconds, less than handing
        // it to another thread costs; only longer ones leave the worker.
        let (counts, spent) = if bytes <= INLINE_TOKENIZER_BYTES {
            work()
        } else {
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|err| wasmtime::format_err!("tokenizer task failed: {err}"))?
        };
        self.cpu.charge(spent);
        if self.cpu.used() > self.cpu_budget {
            self.cpu_exceeded = true;
            return Err(wasmtime::format_err!("CPU time limit exceeded"));
        }
        Ok(counts)
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// The `tokenizer` import of one contract version: the same host
/// function, the version's own error type.
macro_rules! tokenizer_import {
    ($version:ident) => {
        impl $version::llmhost::provider::tokenizer::Host for RequestState {
            async fn count(
                &mut self,
                encoding: String,
                text: String,
            ) -> wasmtime::Result<Result<u32, $version::llmhost::provider::tokenizer::TokenizerError>>
            {
                let mut counts = self.tokenize(encoding, vec![text]).await?;
                Ok(counts
                    .pop()
                    .unwrap_or(Err(UnknownEncoding))
                    .map_err(|UnknownEncoding| {
                        $version::llmhost::provider::tokenizer::TokenizerError::UnknownEncoding
                    }))
            }

            async fn count_many(
                &mut self,
                encoding: String,
                texts: Vec<String>,
            ) -> wasmtime::Result<
                Result<Vec<u32>, $version::llmhost::provider::tokenizer::TokenizerError>,
            > {
                Ok(self
                    .tokenize(encoding, texts)
                    .await?
                    .into_iter()
                    .collect::<Result<Vec<u32>, UnknownEncoding>>()
                    .map_err(|UnknownEncoding| {
                        $version::llmhost::provider::tokenizer::TokenizerError::UnknownEncoding
                    }))
            }
        }
    };
}

tokenizer_import!(v0_1);
tokenizer_import!(v0_2);

/// Caps what one instance holds in all its linear memories and tables
/// together (a component may contain many core modules, each with its
/// own), and remembers a refusal so a resulting trap is reported as a
/// memory limit, not a crash.
pub struct MemoryLimiter {
    limit: usize,
    /// Bytes of memory and table space granted so far.
    used: usize,
    pub(super) exceeded: bool,
}

/// Most elements one table may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// What a table element is counted as against the memory budget.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            exceeded: false,
        }
    }

    /// Grants growth from `current` to `desired` bytes if the total stays
    /// within the budget.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.exceeded = true;
            return false;
        }
        self.used = total;
        true
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_is_shared_by_every_memory_and_table() {
        let mut limiter = MemoryLimiter::new(128 << 20);
        assert!(limiter.memory_growing(0, 100 << 20, None).unwrap());
        assert!(!limiter.memory_growing(0, 100 << 20, None).unwrap());
        assert!(limiter.exceeded);
        // Growing an existing memory counts only the difference.
        assert!(limiter.memory_growing(100 << 20, 110 << 20, None).unwrap());
        assert!(limiter.table_growing(0, 10_000, None).unwrap());
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }
}
