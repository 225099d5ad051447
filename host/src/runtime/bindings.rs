//! Host-side bindings of the `llm-provider` world, one module per contract
//! version the host serves. Nothing generated here leaves the runtime: the
//! boundary converts to and from the host's own types (`crate::types`).

/// `llmhost:provider@0.1.x` (`wit/since_v0.1.0/`): plugins that do their
/// own HTTP over `wasi:http`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "llm-provider",
        imports: {
            // Counting runs off the async workers (see `RequestState::tokenize`).
            "llmhost:provider/tokenizer.count": async | trappable,
            "llmhost:provider/tokenizer.count-many": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
        },
    });
}

/// `llmhost:provider@0.2.x` (`wit/`): plugins that translate, with the
/// host doing the I/O.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "llm-provider",
        imports: {
            "llmhost:provider/tokenizer.count": async | trappable,
            "llmhost:provider/tokenizer.count-many": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}
