#!/usr/bin/env python3
"""Gateway overhead, side by side in one run: the same chat request sent
straight to the vendor simulator, through `llmhost serve`, and through the
LiteLLM proxy (one worker), all in front of that one simulator.

Run by scripts/bench-gateway, which installs oha and LiteLLM, builds the
release llmhost and passes their paths here. Every process listens on
127.0.0.1; this driver starts them, waits until each answers, runs oha
against each in turn, stops them and prints the summary.

Each round, per target:
- closed loop: a fixed number of connections, each sending its next
  request as soon as the last is answered: throughput;
- open loop: oha sends at a fixed rate and measures each request from its
  scheduled start (`--latency-correction`), so a server that falls behind
  shows its queueing in the percentiles instead of slowing the sender.
  When LiteLLM cannot keep up with the rate, it and the direct baseline are
  measured again at a rate it can keep up with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bench_gateway_profile
from bench_gateway_report import Run, summarize

MASTER_KEY = "sk-bench-master"
VENDOR_KEY = "sk-bench-vendor"
# LiteLLM's config serves llmhost's model id, so both gateways get the same
# request body.
GATEWAY_MODEL = "openai/gpt-4o-mini"
DIRECT_MODEL = "gpt-4o-mini"
# Loopback only, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def chat_body(model: str) -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A process under test and its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            sys.exit(f"{self.name} exited with {self.proc.returncode}; its log ends:\n{tail}")


def start(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Server(name, proc, log)


def wait_for_log(server: Server, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        if needle in server.log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    sys.exit(f"{server.name} did not print '{needle}' within {timeout:.0f} s (log: {server.log})")


@dataclass
class Target:
    """One way to reach the simulator, and the process that answers there."""

    name: str
    url: str
    payload: str
    key: str
    server: Server
    answered: int = 0

    def post(self) -> tuple[int, str]:
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.key}"}
        request = urllib.request.Request(self.url, data=self.payload.encode(), headers=headers)
        try:
            with DIRECT.open(request, timeout=30) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")
        except OSError as err:
            return 0, str(err)

    def wait_until_answering(self, timeout: float) -> None:
        """Sends the benchmark's request until it is answered 200."""
        deadline = time.monotonic() + timeout
        status, text = 0, ""
        while time.monotonic() < deadline:
            self.server.check_alive()
            status, text = self.post()
            if status == 200 and '"choices"' in text:
                self.answered += 1
                return
            time.sleep(0.5)
        sys.exit(f"{self.name} did not answer 200 within {timeout:.0f} s: {status} {text[:500]}")


class Oha:
    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir

    def run(self, target: Target, seconds: float, concurrency: int, rate: float | None, show: bool) -> Run:
        # -w: requests still in flight at the deadline are finished, not
        # counted as errors.
        argv = [str(self.binary), "--no-tui", "--output-format", "json", "-w"]
        argv += ["-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST"]
        argv += ["-H", "content-type: application/json", "-H", f"authorization: Bearer {target.key}"]
        argv += ["-d", target.payload]
        if rate is not None:
            argv += ["-q", f"{rate:g}", "--latency-correction"]
        argv.append(target.url)
        pid = target.server.proc.pid
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.workdir)
        elapsed = time.monotonic() - started
        target.server.check_alive()
        if done.returncode != 0:
            sys.exit(f"oha failed on {target.name}: {done.stderr.strip()[:2000]}")
        cpu = cpu_seconds(pid) - cpu_before
        report = json.loads(done.stdout)
        codes = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
        failures = {f"HTTP {k}": v for k, v in codes.items() if k != 200}
        failures.update(report.get("errorDistribution", {}))
        total = sum(codes.values()) + sum(report.get("errorDistribution", {}).values())
        target.answered += codes.get(200, 0)
        percentiles = report["latencyPercentiles"]
        run = Run(
            target=target.name,
            mode="closed" if rate is None else "open",
            rate=rate,
            seconds=seconds,
            total=total,
            ok=codes.get(200, 0),
            errors=sum(failures.values()),
            rps=report["summary"]["requestsPerSec"] if rate is None else total / seconds,
            p50_ms=(percentiles.get("p50") or 0.0) * 1000,
            p99_ms=(percentiles.get("p99") or 0.0) * 1000,
            cpu_us_per_request=cpu / total * 1e6 if total else None,
            error_kinds=failures,
        )
        if show:
            how = f"c={concurrency}" if rate is None else f"{rate:g} req/s"
            print(
                f"   {run.mode:<6} {target.name:<8} {how:>10}: {run.rps:8.1f} req/s"
                f"  p50 {run.p50_ms:8.3f} ms  p99 {run.p99_ms:8.3f} ms  errors {run.errors}"
                f"  ({elapsed:.0f} s)",
                flush=True,
            )
        return run


def litellm_config(upstream: str) -> dict:
    return {
        "model_list": [
            {
                "model_name": GATEWAY_MODEL,
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream, "api_key": VENDOR_KEY},
            }
        ],
        # No callbacks, no message logging; with no database there are no
        # spend logs either.
        "litellm_settings": {
            "set_verbose": False,
            "turn_off_message_logging": True,
            "callbacks": [],
            "success_callback": [],
            "failure_callback": [],
        },
        "general_settings": {"master_key": MASTER_KEY, "disable_spend_logs": True, "disable_error_logs": True},
    }


def start_targets(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> list[Target]:
    """Starts the simulator and the gateways in front of it; appends each to
    `servers` as soon as it runs, so that it is stopped whatever happens."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith(("OPENAI_", "LLMHOST_", "LITELLM_"))
    }

    port = free_port()
    simulator = start("simulator", [str(args.llmhost), "simulate", "--listen", f"127.0.0.1:{port}"], env, workdir)
    servers.append(simulator)
    wait_for_log(simulator, "listening on", 30)
    upstream = f"http://127.0.0.1:{port}/openai/v1"
    direct = Target("direct", f"{upstream}/chat/completions", chat_body(DIRECT_MODEL), VENDOR_KEY, simulator)
    direct.wait_until_answering(10)
    targets = [direct]

    port = free_port()
    llmhost_env = dict(
        env,
        LLMHOST_DB=str(workdir / "usage.db"),
        LLMHOST_MASTER_KEY=MASTER_KEY,
        LLMHOST_CACHE_DIR=str(args.cache_dir),
        OPENAI_BASE_URL=upstream,
        OPENAI_API_KEY=VENDOR_KEY,
        # The component cache's key lives here; kept beside the cache, so
        # later runs load the compiled providers instead of compiling them.
        XDG_CONFIG_HOME=str(args.cache_dir.parent / "config"),
    )
    if args.llmhost_log:
        llmhost_env["LLMHOST_LOG"] = args.llmhost_log
    llmhost = start("llmhost", [str(args.llmhost), "serve", "--listen", f"127.0.0.1:{port}"], llmhost_env, workdir)
    servers.append(llmhost)
    wait_for_log(llmhost, "llmhost gateway listening on http://", 120)
    gateway = Target(
        "llmhost", f"http://127.0.0.1:{port}/v1/chat/completions", chat_body(GATEWAY_MODEL), MASTER_KEY, llmhost
    )
    gateway.wait_until_answering(30)
    targets.append(gateway)

    if args.litellm:
        port = free_port()
        config = workdir / "litellm.yaml"
        # JSON is YAML, and needs no YAML writer.
        config.write_text(json.dumps(litellm_config(upstream), indent=2))
        litellm_env = dict(
            env,
            # What LiteLLM would otherwise fetch from the internet, read from
            # the copies bundled with the package instead.
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS="True",
            LITELLM_LOCAL_AUTOROUTER_PRESETS="True",
            LITELLM_LOCAL_BLOG_POSTS="True",
            LITELLM_LOCAL_POLICY_TEMPLATES="True",
            # Errors only: no access log line per request.
            LITELLM_LOG="ERROR",
            HOME=str(workdir),
        )
        argv = [str(args.litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        litellm = start("litellm", argv + ["--num_workers", "1"], litellm_env, workdir)
        servers.append(litellm)
        proxy = Target(
            "litellm", f"http://127.0.0.1:{port}/chat/completions", chat_body(GATEWAY_MODEL), MASTER_KEY, litellm
        )
        proxy.wait_until_answering(180)
        targets.append(proxy)
    return targets


def slow_rate_for(litellm_rps: float, cap: float) -> float:
    """An open-loop rate LiteLLM can keep up with: half its closed-loop
    throughput, in tens, at most `cap`."""
    return max(10.0, min(cap, (litellm_rps / 2) // 10 * 10))


def profile(args: argparse.Namespace, oha: Oha, target: Target) -> None:
    """Samples llmhost's stacks with perf during one more run; prints the top costs."""
    if shutil.which("perf") is None:
        sys.exit("--profile needs perf (Debian: apt-get install linux-perf)")
    data = args.results.parent / "perf.data"
    # DWARF unwinding: the release build keeps no frame pointers.
    record = ["perf", "record", "-F", "499", "--call-graph", "dwarf,8192", "-o", str(data)]
    record += ["-p", str(target.server.proc.pid)]
    perf = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    if args.profile == "open":
        oha.run(target, args.seconds, args.open_concurrency, args.rate, show=True)
    else:
        oha.run(target, args.closed_seconds, args.concurrency, None, show=True)
    perf.send_signal(signal.SIGINT)
    perf.wait()
    bench_gateway_profile.report(data, args.results.parent)
    print(f"   call graphs: perf report -i {data}")


def usage_rows(db: Path) -> int | None:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM usage_events").fetchone()[0]
    except sqlite3.Error:
        return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oha", type=Path, required=True)
    parser.add_argument("--llmhost", type=Path, required=True)
    parser.add_argument("--litellm", type=Path, help="LiteLLM's `litellm` command; without it LiteLLM is left out")
    parser.add_argument("--cache-dir", type=Path, required=True, help="llmhost's compiled-component cache")
    parser.add_argument("--results", type=Path, required=True, help="JSON file for the figures of every run")
    parser.add_argument("--rate", type=float, default=1000, help="open-loop rate, req/s (default 1000)")
    parser.add_argument(
        "--litellm-rate",
        type=float,
        default=100,
        help="most req/s for the second open loop, run when LiteLLM cannot keep up with --rate:"
        " half its closed-loop throughput, at most this (default 100)",
    )
    parser.add_argument("--seconds", type=float, default=15, help="open-loop run per target (default 15)")
    parser.add_argument("--closed-seconds", type=float, default=10, help="closed-loop run per target (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up before each run, seconds (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections (default 16)")
    parser.add_argument(
        "--open-concurrency",
        type=int,
        default=64,
        help="open loop: most requests in flight; later ones wait in oha, and the wait counts (default 64)",
    )
    parser.add_argument(
        "--llmhost-log",
        metavar="FILTER",
        help="LLMHOST_LOG for the gateway, e.g. `warn` to drop its access log (default: as `llmhost serve` ships,"
        " one access line per request, here into a file)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="repeat all runs, interleaved (default 2)")
    parser.add_argument(
        "--profile",
        choices=("open", "closed"),
        help="then one more llmhost run of that loop under `perf record`, and where its CPU went",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Stopped from outside, still stop the servers (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    # The last run's logs, configs and usage database, for a look afterwards.
    workdir = args.results.parent / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    print(f"   logs and llmhost's usage database in {workdir}")
    # The machine is shared: a busy neighbour shows here, and in the tails.
    print("   load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    oha = Oha(args.oha, workdir)
    servers: list[Server] = []
    runs: list[Run] = []
    slow_rate = None
    try:
        targets = start_targets(args, workdir, servers)
        by_name = {t.name: t for t in targets}
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"-- round {round_no} of {args.rounds}")
            for target in targets:
                oha.run(target, min(args.warmup, 2), args.concurrency, None, show=False)
                runs.append(oha.run(target, args.closed_seconds, args.concurrency, None, show=True))
            for target in targets:
                oha.run(target, args.warmup, args.open_concurrency, args.rate, show=False)
                runs.append(oha.run(target, args.seconds, args.open_concurrency, args.rate, show=True))
            litellm_at_rate = [r for r in runs if r.target == "litellm" and r.rate == args.rate]
            if slow_rate is None and litellm_at_rate and not litellm_at_rate[-1].sustained:
                closed = [r for r in runs if r.target == "litellm" and r.mode == "closed"]
                slow_rate = slow_rate_for(closed[-1].rps, args.litellm_rate)
                print(f"   LiteLLM did not keep up with {args.rate:g} req/s: both again at {slow_rate:g} req/s")
            if slow_rate:
                for name in ("direct", "litellm"):
                    oha.run(by_name[name], args.warmup, args.open_concurrency, slow_rate, show=False)
                    runs.append(oha.run(by_name[name], args.seconds, args.open_concurrency, slow_rate, show=True))
        if args.profile:
            print(f"-- llmhost under perf ({args.profile} loop)")
            profile(args, oha, by_name["llmhost"])
        figures = summarize(runs, args.rate, slow_rate, args.concurrency, args.rounds)
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        for server in reversed(servers):
            server.stop()

    # Rows are written in batches off the request path; stopping the gateway
    # flushed the last batch.
    rows = usage_rows(workdir / "usage.db")
    answered = by_name["llmhost"].answered
    print(f"usage rows written by llmhost: {rows}, for {answered} requests it answered 200")
    figures.update(usage_rows=rows, llmhost_answered=answered, runs=[vars(r) for r in runs])
    args.results.write_text(json.dumps(figures, indent=2))
    print(f"every run's figures: {args.results}")


if __name__ == "__main__":
    main()
