"""Harness throughput and overhead: the workload runner + recorder, end to end into a history.

    python benchmarks/bench_harness.py [--seconds 5] [--concurrency 16] [--workers 2]
                                       [--workload register] [--skip-kvlite] [--json]

Three figures:
1. recorder funnel alone: µs per `LocalSource.record` (stamp, heap, one write per line),
   single thread in this process;
2. no-op client: ops/s the harness sustains when the client costs nothing, and the harness's
   CPU cost per op (parent + worker processes CPU time / completed ops; on a loaded machine
   this is steadier than wall-clock figures), plus client-side latency p50/p99;
3. kvlite, async replication, 3 nodes on 127.0.0.1: ops/s and latency through the harness.
Ops/s counts completions (ok/fail/info) written to history.jsonl during the run window.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

import workloads  # noqa: E402
from chaos.history.writer import HistoryWriter  # noqa: E402
from chaos.recorder import Recorder  # noqa: E402
from chaos.target import Addr  # noqa: E402
from chaos.workload import WorkloadRunner  # noqa: E402
from tests.test_workload_support import NoopTarget  # noqa: E402


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def bench_recorder(n: int = 100_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        rec = Recorder(HistoryWriter(Path(d) / "h.jsonl"), time.monotonic_ns())
        src = rec.local("bench")
        t = time.perf_counter()
        for i in range(n):
            src.record({"process": 1, "type": "invoke", "f": "write", "key": "k1", "value": i})
        dt = time.perf_counter() - t
        rec.close()
    return {"record_us": dt / n * 1e6}


def _analyse(path: Path, t_start: int, t_end: int) -> dict[str, float]:
    ops = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    invokes: dict[Any, int] = {}
    lat: list[int] = []
    done = 0
    for o in ops:
        if o["type"] == "invoke":
            invokes[o["process"]] = o["time"]
        else:
            t0 = invokes.pop(o["process"], None)
            if t_start <= o["time"] <= t_end:
                done += 1
                if t0 is not None:
                    lat.append(o["time"] - t0)
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e3) if lat else (lambda q: 0.0)
    ok = sum(1 for o in ops if o["type"] == "ok")
    return {"ops_per_s": done / ((t_end - t_start) / 1e9), "lines": len(ops), "ok": ok,
            "p50_us": pct(0.5), "p99_us": pct(0.99)}


def run_harness(target: Any, addrs: dict[str, Addr], options: dict[str, Any], args: Any,
                target_ref: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "history.jsonl"
        rec = Recorder(HistoryWriter(path), time.monotonic_ns())
        runner = WorkloadRunner(target, addrs, options, workloads.get(args.workload), rec,
                                concurrency=args.concurrency, rate=None, seed=1,
                                workers=args.workers, op_timeout=5.0, target_ref=target_ref)
        cpu0 = _cpu(resource.RUSAGE_SELF)
        child0 = _cpu(resource.RUSAGE_CHILDREN)
        runner.start()
        time.sleep(0.5)  # warm-up: clients connected, first batches through
        t_start = rec.now()
        time.sleep(args.seconds)
        t_end = rec.now()
        runner.stop(timeout=10)
        rec.close()
        cpu = (_cpu(resource.RUSAGE_SELF) - cpu0) + (_cpu(resource.RUSAGE_CHILDREN) - child0)
        res = _analyse(path, t_start, t_end)
        res["cpu_us_per_op"] = cpu / max(1, res["lines"] // 2) * 1e6
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workload", default="register", choices=list(workloads.NAMES))
    ap.add_argument("--skip-kvlite", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    out: dict[str, Any] = {"recorder": bench_recorder()}
    out["noop"] = run_harness(NoopTarget(), {}, {}, args)
    if not args.skip_kvlite:
        from targets.kvlite.testing import Cluster
        from targets.kvlite.plugin import KvliteTarget
        with tempfile.TemporaryDirectory() as d, \
                Cluster(d, n=3, options={"replication": "async", "failover": "none"}) as c:
            addrs = {n: Addr(h, p) for n, (h, p) in c.addrs().items()}
            out["kvlite_async"] = run_harness(KvliteTarget(), addrs, {"timeout": 2.0}, args,
                                              target_ref="targets.kvlite.plugin:KvliteTarget")
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"recorder: {out['recorder']['record_us']:.1f} µs per recorded line (one thread)")
    for name in ("noop", "kvlite_async"):
        r = out.get(name)
        if r:
            print(f"{name:13s} {r['ops_per_s']:8.0f} ops/s  p50 {r['p50_us']:7.0f} µs  "
                  f"p99 {r['p99_us']:7.0f} µs  harness CPU {r['cpu_us_per_op']:.0f} µs/op "
                  f"(concurrency {args.concurrency}, workers {args.workers}, "
                  f"{args.workload})")


if __name__ == "__main__":
    main()
