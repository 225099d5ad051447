"""What scripts/bench_gateway.py measured: one oha run's figures, and the
summary tables and target verdicts printed at the end of a run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

# A fixed rate counts as kept up when at least this share of it was sent
# (oha's scheduling jitter) and nothing failed.
SUSTAINED_SHARE = 0.95
# The gateway issue's targets.
TARGET_ADDED_P99_MS = 1.0
TARGET_THROUGHPUT_RATIO = 100.0


@dataclass
class Run:
    """What one oha run measured against one target."""

    target: str
    mode: str  # "open" (fixed rate) or "closed" (fixed concurrency)
    rate: float | None
    seconds: float
    total: int
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    # CPU time of the target's own process, per request sent.
    cpu_us_per_request: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def sustained(self) -> bool:
        return self.rate is None or (self.rps >= SUSTAINED_SHARE * self.rate and self.errors == 0)


def median_run(runs: list[Run]) -> Run | None:
    """One run standing for several rounds of the same one: the median of each
    figure, the sum of the counts."""
    if len(runs) <= 1:
        return runs[0] if runs else None
    cpu = [r.cpu_us_per_request for r in runs if r.cpu_us_per_request is not None]
    errors: dict[str, int] = {}
    for run in runs:
        for kind, count in run.error_kinds.items():
            errors[kind] = errors.get(kind, 0) + count
    return Run(
        target=runs[0].target,
        mode=runs[0].mode,
        rate=runs[0].rate,
        seconds=runs[0].seconds,
        total=sum(r.total for r in runs),
        ok=sum(r.ok for r in runs),
        errors=sum(r.errors for r in runs),
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        cpu_us_per_request=statistics.median(cpu) if cpu else None,
        error_kinds=errors,
    )


def pick(runs: list[Run], target: str, mode: str, rate: float | None = None) -> Run | None:
    return median_run([r for r in runs if r.target == target and r.mode == mode and r.rate == rate])


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summarize(runs: list[Run], rate: float, slow_rate: float | None, concurrency: int, rounds: int) -> dict:
    """Prints the tables and verdicts; returns the figures for the results file."""
    of_rounds = f", median of {rounds} rounds" if rounds > 1 else ""
    figures: dict = {"open": {}, "closed": {}}

    print()
    print(f"== closed loop, concurrency {concurrency}{of_rounds}")
    print(f"{'target':<16} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'CPU µs/req':>11}")
    closed: dict[str, Run] = {}
    for name in ("direct", "llmhost", "litellm"):
        run = pick(runs, name, "closed")
        if run is None:
            continue
        closed[name] = run
        print(
            f"{name:<16} {run.rps:>9.1f} {run.p50_ms:>9.3f} {run.p99_ms:>9.3f} {run.errors:>7}"
            f" {fmt(run.cpu_us_per_request, 0):>11}"
        )
        figures["closed"][name] = {
            "rps": run.rps,
            "p50_ms": run.p50_ms,
            "p99_ms": run.p99_ms,
            "errors": run.errors,
            "cpu_us_per_request": run.cpu_us_per_request,
        }

    print()
    print(f"== open loop, fixed rate, latency from each request's scheduled start{of_rounds}")
    print(
        f"{'target':<16} {'asked':>6} {'sent/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'+p50 ms':>9}"
        f" {'+p99 ms':>9} {'errors':>7} {'CPU µs/req':>11}  kept up"
    )
    rows = [(name, rate) for name in ("direct", "llmhost", "litellm")]
    if slow_rate:
        rows += [("direct", slow_rate), ("litellm", slow_rate)]
    for name, at in rows:
        run = pick(runs, name, "open", at)
        if run is None:
            continue
        base = pick(runs, "direct", "open", at)
        added50 = run.p50_ms - base.p50_ms if base and name != "direct" else None
        added99 = run.p99_ms - base.p99_ms if base and name != "direct" else None
        print(
            f"{name:<16} {at:>6g} {run.rps:>8.1f} {run.p50_ms:>9.3f} {run.p99_ms:>9.3f}"
            f" {fmt(added50):>9} {fmt(added99):>9} {run.errors:>7} {fmt(run.cpu_us_per_request, 0):>11}"
            f"  {'yes' if run.sustained else 'NO'}"
        )
        figures["open"][f"{name}@{at:g}"] = {
            "rate": at,
            "sent_rps": run.rps,
            "p50_ms": run.p50_ms,
            "p99_ms": run.p99_ms,
            "added_p50_ms": added50,
            "added_p99_ms": added99,
            "errors": run.errors,
            "error_kinds": run.error_kinds,
            "kept_up": run.sustained,
            "cpu_us_per_request": run.cpu_us_per_request,
        }

    print()
    print("== figures (all from this one run)")
    opened = figures["open"]
    llmhost = opened.get(f"llmhost@{rate:g}")
    if llmhost:
        met = llmhost["kept_up"] and llmhost["added_p99_ms"] <= TARGET_ADDED_P99_MS
        figures["added_p99_target_met"] = met
        print(
            f"llmhost added latency at {rate:g} req/s: p50 +{llmhost['added_p50_ms']:.3f} ms,"
            f" p99 +{llmhost['added_p99_ms']:.3f} ms"
            f" (target p99 ≤ {TARGET_ADDED_P99_MS:g} ms: {'met' if met else 'MISSED'})"
        )
    litellm = opened.get(f"litellm@{rate:g}")
    if litellm and litellm["kept_up"]:
        print(
            f"LiteLLM added latency at {rate:g} req/s: p50 +{litellm['added_p50_ms']:.3f} ms,"
            f" p99 +{litellm['added_p99_ms']:.3f} ms"
        )
    elif litellm:
        print(
            f"LiteLLM did not keep up with {rate:g} req/s: it took {litellm['sent_rps']:.0f} req/s,"
            f" p99 {litellm['p99_ms']:.0f} ms (queueing), {litellm['errors']} errors"
        )
    slow = opened.get(f"litellm@{slow_rate:g}") if slow_rate else None
    if slow:
        print(
            f"LiteLLM added latency at {slow_rate:g} req/s: p50 +{fmt(slow['added_p50_ms'])} ms,"
            f" p99 +{fmt(slow['added_p99_ms'])} ms"
            f" ({'kept up' if slow['kept_up'] else 'did NOT keep up'})"
        )
    if "llmhost" in closed and "direct" in closed:
        print(
            f"llmhost throughput at concurrency {concurrency}: {closed['llmhost'].rps:.0f} req/s"
            f" ({closed['llmhost'].rps / closed['direct'].rps:.2f}× direct's {closed['direct'].rps:.0f})"
        )
    if "llmhost" in closed and "litellm" in closed and closed["litellm"].rps > 0:
        ratio = closed["llmhost"].rps / closed["litellm"].rps
        met = ratio >= TARGET_THROUGHPUT_RATIO
        figures["throughput_ratio"] = ratio
        figures["throughput_target_met"] = met
        print(
            f"throughput llmhost / LiteLLM at concurrency {concurrency}: {ratio:.1f}×"
            f" ({closed['llmhost'].rps:.0f} vs {closed['litellm'].rps:.0f} req/s;"
            f" target ≥ {TARGET_THROUGHPUT_RATIO:g}×: {'met' if met else 'MISSED'})"
        )
    errors = sum(r.errors for r in runs)
    print(f"non-200 answers and failed requests, all runs: {errors}")
    return figures
