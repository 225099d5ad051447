//! Throughput of the host tokenizer on one file, single thread, printed as
//! one JSON line. `scripts/bench-tokenizer` runs this and the Python
//! `tiktoken` package on the same text and encoding and compares them.
//!
//! Run: `cargo bench -p llmhost --bench tokenizer -- --file PATH
//! [--encoding o200k_base] [--seconds 3]`.

use std::time::{Duration, Instant};

fn main() {
    let mut file = None;
    let mut encoding = "o200k_base".to_owned();
    let mut seconds = 3.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--file" => file = Some(value("--file")),
            "--encoding" => encoding = value("--encoding"),
            "--seconds" => seconds = value("--seconds").parse().expect("--seconds: a number"),
            // Passed by `cargo bench`.
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: tokenizer --file PATH [--encoding NAME] [--seconds S]");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&file).expect("read --file");

    // The first call loads the tables; it is not timed.
    let tokens = llmhost::tokenizer::count(&encoding, &text)
        .unwrap_or_else(|| panic!("the host has no encoding {encoding:?}"));
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < 3 || started.elapsed() < budget {
        let run = Instant::now();
        let counted = llmhost::tokenizer::count(&encoding, &text).expect("encoding");
        runs.push(run.elapsed().as_secs_f64());
        assert_eq!(counted, tokens);
    }
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "implementation": "llmhost (tiktoken-rs)",
            "encoding": encoding,
            "bytes": text.len(),
            "tokens": tokens,
            "runs": runs.len(),
            "median_seconds": median,
            "mib_per_second": text.len() as f64 / median / (1024.0 * 1024.0),
            "tokens_per_second": tokens as f64 / median,
        })
    );
}
