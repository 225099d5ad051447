"""Tables of the sandbox bench's medians, from criterion's estimates in
target/criterion, as BENCHMARKS.md shows them. Run by scripts/bench after
the sandbox bench; reads only the latest run of each benchmark."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
PROVIDERS = ["openai", "deepseek", "grok", "claude", "openai-v01"]
# Rows shown under another name: the contract 0.1 fixture.
LABELS = {"openai-v01": "openai, contract 0.1 (before)"}
STREAM_EVENTS = 500


def median_ns(*parts: str):
    path = CRITERION.joinpath(*parts, "new", "estimates.json")
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(ns) -> str:
    if ns is None:
        return "–"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs"


def side_by_side(group: str, title: str, added: str, per: int) -> None:
    """Native against wasm for each provider; the difference divided by per."""
    print(title)
    print()
    print(f"| provider | native | wasm | {added} | wasm / native |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for p in PROVIDERS:
        n, w = median_ns(group, p, "native"), median_ns(group, p, "wasm")
        if n is None or w is None:
            continue
        label = LABELS.get(p, p)
        print(f"| {label} | {fmt(n)} | {fmt(w)} | {fmt((w - n) / per)} | {w / n:.2f}× |")


def main() -> None:
    if not CRITERION.exists():
        sys.exit("no criterion results: run `cargo bench -p llmhost --bench sandbox` first")

    side_by_side("chat", "Chat, one request (median):", "added by the host", 1)
    print()
    side_by_side(
        "stream",
        f"Stream of {STREAM_EVENTS} events, read to the end (median):",
        "added per chunk",
        STREAM_EVENTS,
    )

    print()
    print(f"Fresh instance + one call + drop, no I/O (median): {fmt(median_ns('call', 'no_io'))}")

    print()
    print("Plugin load, one component (median):")
    print()
    print("| component | compile | from cache |")
    print("| --- | ---: | ---: |")
    # Group-level folders (report, and one per function name) are not components.
    skip = {"report", "compile", "cached"}
    loads = sorted(p.name for p in (CRITERION / "load").iterdir() if p.is_dir() and p.name not in skip)
    for c in loads:
        print(f"| {c} | {fmt(median_ns('load', c, 'compile'))} | {fmt(median_ns('load', c, 'cached'))} |")


if __name__ == "__main__":
    main()
