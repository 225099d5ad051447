//! Host-side bindings of the `llm-provider` world (`wit/`).

wasmtime::component::bindgen!({
    path: "../wit",
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
    additional_derives: [PartialEq],
});
