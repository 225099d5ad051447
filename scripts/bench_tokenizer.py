"""Host tokenizer against Python's tiktoken: same text, same encoding,
single thread, measured in one run.

Run through scripts/bench-tokenizer, which installs tiktoken first.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Where tiktoken downloads each encoding from; its cache file is named by
# the SHA-1 of this address. The machine has no internet, so the cache is
# filled from the tables tiktoken-rs ships, which are the same files.
TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def corpus(path: Path, min_bytes: int) -> None:
    """The project's own prose and code, in a fixed order, repeated up to
    min_bytes: English, Markdown, Rust, TOML and WIT."""
    files = sorted(
        p
        for pattern in ("*.md", "docs/*.md", "host/src/**/*.rs", "wit/*.wit", "registry/**/*.toml")
        for p in ROOT.glob(pattern)
        if "target" not in p.parts
    )
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in files)
    repeated = text
    while len(repeated.encode()) < min_bytes:
        repeated += "\n\n" + text
    path.write_text(repeated, encoding="utf-8")


def tiktoken_rs_assets() -> Path:
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT
        )
    )
    for package in meta["packages"]:
        if package["name"] == "tiktoken-rs":
            return Path(package["manifest_path"]).parent / "assets"
    sys.exit("tiktoken-rs is not in the dependency graph")


def fill_tiktoken_cache(cache: Path, encoding: str) -> None:
    url = TIKTOKEN_URLS.get(encoding)
    if url is None:
        sys.exit(f"no tiktoken address known for {encoding}")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / hashlib.sha1(url.encode()).hexdigest()
    if not target.exists():
        shutil.copyfile(tiktoken_rs_assets() / f"{encoding}.tiktoken", target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


def run_host(path: Path, encoding: str, seconds: float) -> dict:
    out = subprocess.check_output(
        [
            "cargo", "bench", "--quiet", "-p", "llmhost", "--bench", "tokenizer", "--",
            "--file", str(path), "--encoding", encoding, "--seconds", str(seconds),
        ],
        cwd=ROOT,
    )
    return json.loads(out.decode().strip().splitlines()[-1])


def run_python(path: Path, encoding: str, seconds: float) -> dict:
    import tiktoken

    enc = tiktoken.get_encoding(encoding)
    text = path.read_text(encoding="utf-8")
    tokens = len(enc.encode_ordinary(text))  # warm-up, not timed
    runs = []
    started = time.perf_counter()
    while len(runs) < 3 or time.perf_counter() - started < seconds:
        t = time.perf_counter()
        counted = len(enc.encode_ordinary(text))
        runs.append(time.perf_counter() - t)
        assert counted == tokens
    median = statistics.median(runs)
    size = len(text.encode())
    return {
        "implementation": f"python tiktoken {tiktoken.__version__}",
        "encoding": encoding,
        "bytes": size,
        "tokens": tokens,
        "runs": len(runs),
        "median_seconds": median,
        "mib_per_second": size / median / (1024 * 1024),
        "tokens_per_second": tokens / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoding", default="o200k_base", choices=sorted(TIKTOKEN_URLS))
    parser.add_argument("--seconds", type=float, default=3.0, help="time per side")
    parser.add_argument("--min-bytes", type=int, default=1 << 20, help="corpus size")
    args = parser.parse_args()

    work = ROOT / "target" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    path = work / "tokenizer-corpus.txt"
    corpus(path, args.min_bytes)
    fill_tiktoken_cache(work / "tiktoken-cache", args.encoding)

    # Alternate the two sides, twice each, and keep each side's best median.
    results = {}
    for _ in range(2):
        for name, run in (("host", run_host), ("python", run_python)):
            result = run(path, args.encoding, args.seconds)
            best = results.get(name)
            if best is None or result["median_seconds"] < best["median_seconds"]:
                results[name] = result
    host, python = results["host"], results["python"]
    if host["tokens"] != python["tokens"]:
        sys.exit(f"token counts differ: host {host['tokens']}, python {python['tokens']}")

    print(f"tokenizer: {args.encoding}, {host['bytes']} bytes, {host['tokens']} tokens, single thread")
    print()
    print("| implementation | median per pass | MiB/s | tokens/s |")
    print("| --- | ---: | ---: | ---: |")
    for r in (python, host):
        print(
            f"| {r['implementation']} | {r['median_seconds'] * 1e3:.1f} ms "
            f"| {r['mib_per_second']:.2f} | {r['tokens_per_second'] / 1e6:.2f} M |"
        )
    print()
    print(f"host / python throughput: {host['tokens_per_second'] / python['tokens_per_second']:.2f}x")


if __name__ == "__main__":
    main()
