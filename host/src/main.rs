//! The `llmhost` binary: see `llmhost --help`.

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(llmhost::cli::Cli::from_env().run());
    drop(runtime);
    std::process::exit(code);
}
