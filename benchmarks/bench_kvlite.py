"""kvlite throughput and latency: a 3-node cluster on loopback, per replication mode.

    python benchmarks/bench_kvlite.py [--seconds 5] [--clients 16] [--modes async,sync,...]

For each replication mode it starts a fresh 3-node cluster (real processes, failover=none so
leadership is stable, or majority with --failover majority), then runs `--clients`
concurrent closed-loop clients (one connection each, one request in flight each) doing
leader writes for `--seconds`, then leader reads. Clients are asyncio coroutines in this one
process, speaking the wire protocol directly, so the load generator costs little CPU. Prints
ops/s and p50/p99 latency per mode and phase; `--json` prints the figures as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from targets.kvlite.testing import Cluster  # noqa: E402


async def closed_loop(port: int, op: str, seconds: float, worker: int, lat: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    deadline = time.perf_counter() + seconds
    try:
        while True:
            t0 = time.perf_counter()
            if t0 > deadline:
                break
            if op == "write":
                req = {"id": done, "op": "write", "key": f"k{worker}-{done % 100}", "value": done}
            else:
                req = {"id": done, "op": "read", "key": f"k{worker}-{done % 100}"}
            writer.write((json.dumps(req) + "\n").encode())
            reply = json.loads(await reader.readline())
            if reply.get("type") != "ok":
                raise RuntimeError(f"{op} failed: {reply}")
            lat.append(time.perf_counter() - t0)
            done += 1
    finally:
        writer.close()
    return done


async def _gen(port: int, op: str, workers: range, seconds: float) -> tuple[int, list[float]]:
    lat: list[float] = []
    counts = await asyncio.gather(*(closed_loop(port, op, seconds, w, lat) for w in workers))
    return sum(counts), lat


def _gen_proc(args: tuple[int, str, range, float]) -> tuple[int, list[float]]:
    return asyncio.run(_gen(*args))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(port: int, op: str, clients: int, seconds: float, procs: int = 1,
          leader_pid: int | None = None, all_pids: list[int] | None = None) -> dict[str, float]:
    """`clients` closed-loop clients spread over `procs` load-generator processes.

    CPU time per op of the leader and of all nodes together is measured too: on a shared,
    loaded machine it is a steadier figure than ops/s (which mostly measures how often the
    scheduler lets our processes run).
    """
    cpu0 = {p: cpu_seconds(p) for p in all_pids or []}
    t0 = time.perf_counter()
    if procs <= 1:
        results = [asyncio.run(_gen(port, op, range(clients), seconds))]
    else:
        import multiprocessing
        parts = [(port, op, range(i, clients, procs), seconds) for i in range(procs)]
        with multiprocessing.Pool(procs) as pool:
            results = pool.map(_gen_proc, parts)
    elapsed = time.perf_counter() - t0
    counts = [r[0] for r in results]
    lat = sorted(x for r in results for x in r[1])
    q = statistics.quantiles(lat, n=100)
    ops = sum(counts)
    out = {"ops": ops, "ops_per_s": round(ops / elapsed),
           "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}
    if all_pids:
        used = {p: cpu_seconds(p) - cpu0[p] for p in all_pids}
        out["leader_cpu_us_per_op"] = round(used[leader_pid] / ops * 1e6, 1)
        out["nodes_cpu_us_per_op"] = round(sum(used.values()) / ops * 1e6, 1)
    return out


def run_mode(mode: str, failover: str, clients: int, seconds: float, fsync: str,
             procs: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as d:
        opts = {"replication": mode, "failover": failover, "fsync": fsync,
                "heartbeat_ms": 100, "election_timeout_ms": 1000}
        if failover == "majority":
            opts["initial_leader"] = None
        with Cluster(d, 3, options=opts) as c:
            leader = c.wait_for(lambda: (c.leaders() or [None])[0], 15, "a leader")
            if failover == "majority":    # wait for the lease and the first commit
                c.wait_for(lambda: c.call(leader, {"op": "read", "key": "x"})["type"] == "ok", 10)
            port = c.ports[leader]
            pids = [p.pid for p in c.procs.values()]
            lpid = c.procs[leader].pid
            w = phase(port, "write", clients, seconds, procs, lpid, pids)
            r = phase(port, "read", clients, seconds, procs, lpid, pids)
            return {"mode": mode, "failover": failover, "fsync": fsync, "write": w, "read": r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--modes", default="async,semi-sync,sync,quorum")
    ap.add_argument("--failover", default="none", choices=["none", "naive", "majority"])
    ap.add_argument("--fsync", default="never", choices=["never", "always"])
    ap.add_argument("--procs", type=int, default=1, help="load-generator processes")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = [run_mode(m, a.failover, a.clients, a.seconds, a.fsync, a.procs)
            for m in a.modes.split(",")]
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"3 nodes, {a.clients} clients, {a.seconds:g} s per phase, failover={a.failover}, "
          f"fsync={a.fsync}, {a.procs} load process(es)")
    print(f"{'mode':<10} {'writes/s':>9} {'w p50 ms':>9} {'w p99 ms':>9} {'w ldr us':>9} "
          f"{'w all us':>9} {'reads/s':>9} {'r p50 ms':>9} {'r p99 ms':>9} {'r ldr us':>9}")
    for r in rows:
        w, rd = r["write"], r["read"]
        print(f"{r['mode']:<10} {w['ops_per_s']:>9} {w['p50_ms']:>9} {w['p99_ms']:>9} "
              f"{w['leader_cpu_us_per_op']:>9} {w['nodes_cpu_us_per_op']:>9} "
              f"{rd['ops_per_s']:>9} {rd['p50_ms']:>9} {rd['p99_ms']:>9} "
              f"{rd['leader_cpu_us_per_op']:>9}")
    print("(us = CPU microseconds per op: of the leader, and of all three nodes together)")


if __name__ == "__main__":
    main()
