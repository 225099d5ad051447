"""Where `llmhost serve` spends its CPU, from a `perf record --call-graph
dwarf` of the gateway under load (scripts/bench-gateway --profile).

Reads `perf script` once and prints: the share of samples per binary, the
functions with the most self time, and each sample put in one bucket of
the gateway's request path by the first rule its stack matches. Also
writes the stacks folded (`frame;frame;... count`) for flame-graph tools.
"""

from __future__ import annotations

import collections
import re
import subprocess
from pathlib import Path

# First match wins, so the more specific rules come first: the upstream
# call runs inside the host's chat, which runs inside the gateway handler.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("usage rows into SQLite (batched writer)", ("llmhost::store::", "rusqlite::", "sqlite3_step")),
    ("access log line (format, write to stderr)", ("tracing_core::event::Event::dispatch",)),
    ("wasm: instantiate per request", ("InstancePre", "Host::instance", "Indices>::load")),
    (
        "wasm: drop instance and store, reset memory",
        ("drop_in_place<llmhost::runtime::Instance>", "drop_in_place<wasmtime::runtime::store::Store"),
    ),
    ("wasm: calls into the guest (lift, lower, fiber)", ("wasmtime::runtime::",)),
    ("upstream HTTP (hyper client, loopback TCP)", ("hyper::client::", "hyper_util::client::")),
    ("gateway handler and host (JSON, auth, routing)", ("llmhost::gateway::", "llmhost::host::", "llmhost::router::")),
    # hyper's client connections matched above, so a dispatcher left is a
    # server connection's.
    ("client-facing HTTP (hyper server, loopback TCP)", ("hyper::proto::h1::", "hyper::server::", "axum::")),
    ("tokio: park, wake, epoll", ("park", "epoll_wait", "futex")),
]
GUEST_CODE = "wasm: guest code (JIT)"

FRAME = re.compile(r"^\s*[0-9a-f]+ (?P<sym>.*?)(?: \((?P<dso>[^()]*)\))?$")


def samples(perf_data: Path) -> list[list[tuple[str, str]]]:
    """Every sample's stack, leaf first, as (function, binary) pairs."""
    script = subprocess.run(
        # Without inlined frames: resolving them takes minutes, and the
        # outer functions name the parts well enough.
        ["perf", "script", "--no-inline", "-i", str(perf_data), "-F", "comm,tid,ip,sym,dso"],
        capture_output=True,
        text=True,
        errors="replace",
        check=True,
    ).stdout
    stacks: list[list[tuple[str, str]]] = []
    for block in script.split("\n\n"):
        frames = [(m["sym"], m["dso"] or "") for m in map(FRAME.match, block.splitlines()[1:]) if m]
        if frames:
            stacks.append(frames)
    return stacks


def is_jit(dso: str) -> bool:
    """Whether code is wasmtime's compiled guest code, which perf names
    after the process's perf map, or `[JIT]`."""
    return dso.startswith("[JIT]") or re.fullmatch(r"(.*/)?perf-\d+\.map", dso) is not None


def bucket(stack: list[tuple[str, str]]) -> str:
    if is_jit(stack[0][1]):
        return GUEST_CODE
    text = "\n".join(sym for sym, _ in stack)
    for name, markers in BUCKETS:
        if any(marker in text for marker in markers):
            return name
    return "other"


def report(perf_data: Path, out_dir: Path) -> None:
    stacks = samples(perf_data)
    total = len(stacks)
    if not total:
        print("   perf recorded no samples")
        return

    def show(title: str, counts: collections.Counter, limit: int) -> None:
        print(f"   {title}:")
        for name, count in counts.most_common(limit):
            print(f"     {100 * count / total:5.1f}%  {name[:140]}")

    binaries = collections.Counter(
        "wasm guest (JIT)" if is_jit(stack[0][1]) else Path(stack[0][1]).name or "?" for stack in stacks
    )
    show(f"perf: {total} samples of llmhost, by binary", binaries, 6)
    show("by part of the request path (first matching rule)", collections.Counter(map(bucket, stacks)), 12)
    others = collections.Counter(stack[0][0] for stack in stacks if bucket(stack) == "other")
    show("'other', by function", others, 8)
    show("most self time", collections.Counter(stack[0][0] for stack in stacks), 15)

    folded = collections.Counter(";".join(sym for sym, _ in reversed(stack)) for stack in stacks)
    path = out_dir / "perf-folded.txt"
    path.write_text("".join(f"{stack} {count}\n" for stack, count in folded.most_common()))
    print(f"   folded stacks (for flame graphs): {path}")
