"""Benchmark: `chaos shrink` on kvlite async + naive failover with a schedule of 6 partitions.

    python benchmarks/bench_shrink.py [--tries 3] [--seed 1] [--store DIR]

Records the failing run (set workload, partitions isolating the leader every 3 s for 3 s,
36 s: six partitions), then shrinks it with `chaos shrink --tries K` and prints the time
taken, the re-runs it made, the minimal schedule, and its reproduction rate over K tries
(from RUNDIR/shrink/shrink.json). The issue asks for at most 2 fault events that still lose
acknowledged writes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def chaos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chaos", *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", default="3")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--store", type=Path, default=None)
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="bench-shrink-"))
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    t0 = time.monotonic()
    proc = chaos("run", "--target", "kvlite", "--workload", "set", "-O", "replication=async",
                 "-O", "failover=naive", "--nemesis", "partition", "--nemesis-interval", "3",
                 "--time-limit", "36", "--seed", args.seed, "--store", str(store), "--quiet")
    run = (store / "latest").resolve()
    events = len(json.loads((run / "config.json").read_text())["config"]["schedule"])
    print(f"failing run: exit {proc.returncode}, {events} fault events, "
          f"{time.monotonic() - t0:.0f} s: {run}")
    t0 = time.monotonic()
    proc = chaos("shrink", str(run), "--tries", args.tries)
    took = time.monotonic() - t0
    print(proc.stderr, end="")
    print(proc.stdout, end="")
    doc = json.loads((run / "shrink" / "shrink.json").read_text())
    reruns = sum(s["tries"] for s in doc["steps"])
    rate = doc["rate"]
    print(f"\nshrink: exit {proc.returncode}, {took:.0f} s, {len(doc['steps'])} steps, "
          f"{reruns} re-runs; {doc['events'][0]} -> {doc['events'][1]} fault events; "
          f"{doc['kind']} reproduced in {rate['reproduced']}/{rate['tries']} tries "
          f"(anomalies per try: {rate['counts']})")


if __name__ == "__main__":
    main()
