"""What the clock fault's preload costs: per clock call, and in kvlite's throughput.

libfaketime reads the control file on every clock call (FAKETIME_NO_CACHE=1, so a fault
acts at once); this measures

  call    ns per time.monotonic() / time.time() in a Python process, with and without the
          preload (the control file at "+0")
  kvlite  ok ops/s and latency p50/p99 of `chaos run` (register, quorum+majority, --rate 0:
          as fast as the clients go) without the clock fault, and with `--nemesis clock
          --clock offset:0` (every node under the preload, one zero skew applied mid-run)

    python benchmarks/bench_clock.py [--time-limit 12] [--runs 3] [--calls 200000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from chaos.faults.clock import CONTROL  # noqa: E402
from chaos.faults import get  # noqa: E402

_TIMEIT = ("import time, timeit; n = {n}; "
           "print(min(timeit.repeat(time.monotonic, number=n, repeat=3)) / n * 1e9, "
           "min(timeit.repeat(time.time, number=n, repeat=3)) / n * 1e9)")


def call_cost(calls: int, preload: bool) -> tuple[float, float]:
    """(ns per time.monotonic(), ns per time.time())."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / CONTROL).write_text("+0\n")
        env = dict(os.environ, **(get("clock").node_env(d) if preload else {}))
        out = subprocess.run([sys.executable, "-c", _TIMEIT.format(n=calls)], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def kvlite(args: list[str], seed: int, time_limit: float, store: str) -> tuple[float, float,
                                                                                float]:
    """(ok ops/s, p50 ms, p99 ms) of one run."""
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", "run", "--json", "--seed", str(seed), "--store", store,
         "--workload", "register", "-O", "replication=quorum", "-O", "failover=majority",
         "--rate", "0", "--time-limit", str(time_limit), "--nemesis-interval",
         str(time_limit / 3), *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=600)
    doc = json.loads(proc.stdout)
    stats = doc["results"]["perf"]["stats"]
    lat = stats["latency_ms"]["all"]
    return stats["ok_throughput_per_s"], lat["p50"], lat["p99"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=12)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--calls", type=int, default=200000)
    a = ap.parse_args()
    bare, faked = call_cost(a.calls, False), call_cost(a.calls, True)
    print("| clock call | without the preload | with libfaketime (NO_CACHE) |")
    print("|---|---|---|")
    print(f"| time.monotonic() | {bare[0]:.0f} ns | {faked[0]:.0f} ns |")
    print(f"| time.time() | {bare[1]:.0f} ns | {faked[1]:.0f} ns |\n")
    rows = {"no clock fault": ["--nemesis", "none"],
            "--nemesis clock --clock offset:0": ["--nemesis", "clock", "--clock", "offset:0"]}
    print(f"kvlite register, quorum+majority, --rate 0, {a.time_limit:g} s, median of "
          f"{a.runs} runs\n")
    print("| run | ok ops/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as store:
        for name, args in rows.items():
            got = [kvlite(args, seed, a.time_limit, store) for seed in range(1, a.runs + 1)]
            med = [statistics.median(g[i] for g in got) for i in range(3)]
            print(f"| {name} | {med[0]:.0f} | {med[1]:.1f} | {med[2]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
