//! The data of one request's store: an empty WASI context (no files, no
//! environment, no sockets), the HTTP gate, limits and CPU accounting.

use super::bindings::llmhost::provider::tokenizer::{self, TokenizerError};
use super::gate::RequestGate;
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

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

    /// Guest time so far, including the current stretch.
    pub(super) fn used(&self) -> Duration {
        let current = self
            .running_since_ns
            .map_or(0, |since| coarse_now_ns().saturating_sub(since));
        Duration::from_nanos(self.used_ns + current)
    }
}

impl RequestState {
    pub(super) fn new(gate: RequestGate, memory_limit: usize, cpu_budget: Duration) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            gate,
            limits: MemoryLimiter::new(memory_limit),
            cpu: GuestClock::default(),
            cpu_budget,
            cpu_exceeded: false,
        }
    }
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

impl tokenizer::Host for RequestState {
    fn count(
        &mut self,
        encoding: String,
        text: String,
    ) -> wasmtime::Result<Result<u32, TokenizerError>> {
        Ok(super::tokenizer::count(&encoding, &text))
    }

    fn count_many(
        &mut self,
        encoding: String,
        texts: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<u32>, TokenizerError>> {
        Ok(texts
            .iter()
            .map(|text| super::tokenizer::count(&encoding, text))
            .collect())
    }
}

/// Caps a request's linear memory and tables, and remembers a refusal so a
/// resulting trap is reported as a memory limit, not a crash.
pub struct MemoryLimiter {
    limit: usize,
    pub(super) exceeded: bool,
}

/// Most table elements one instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
