//! The data of one request's store: an empty WASI context (no files, no
//! environment, no sockets), the HTTP gate, limits and CPU accounting.

use super::bindings::llmhost::provider::tokenizer::{self, TokenizerError};
use super::gate::RequestGate;
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
    /// Epoch ticks during which guest code was running.
    pub(super) cpu_ticks: u64,
    pub(super) cpu_budget_ticks: u64,
    pub(super) cpu_exceeded: bool,
}

impl RequestState {
    pub(super) fn new(gate: RequestGate, memory_limit: usize, cpu_budget_ticks: u64) -> Self {
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
            cpu_ticks: 0,
            cpu_budget_ticks,
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
