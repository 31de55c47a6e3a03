"""Detection rates of the acceptance matrices (DESIGN §6, §7): each cell run N times with seeds.

    python benchmarks/bench_acceptance.py --runs 10 --time-limit 15 [--runtime local] [--cells a,b]
    python benchmarks/bench_acceptance.py --target etcd --runs 10 --time-limit 20
    python benchmarks/bench_acceptance.py --target redis --runs 10 --time-limit 25

--target picks the matrix (kvlite, etcd, redis, postgres); each target's cells carry their own
target options, and --runtime defaults to the runtime the matrix was written for (kvlite
local, etcd, redis and postgres docker). Cells that lose writes also report the lost-write
counts (median, max); cells with a kill the failover time (kill -> first write acknowledged
by another node); postgres cells the failover time of their first fault (fault in place ->
the monitor's first sight of a new primary in a later timeline,
targets.postgres.matrix.failover_times) and to the first write a client saw acknowledged by
the new primary (first_write_times).

For every cell, a run "detects" when the expected anomaly kinds are all found (unsafe cells)
or when the verdict is valid (safe cells). Prints a Markdown table for docs/benchmarks.md.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from targets.etcd.matrix import CELLS as ETCD_CELLS  # noqa: E402 - the target's own matrix
from targets.redis.matrix import CELLS as REDIS_CELLS, failover_s  # noqa: E402
from targets.postgres.matrix import (  # noqa: E402
    CELLS as PG_CELLS, failover_times, first_write_times)
UNSAFE_SET = ["--workload", "set", "-O", "replication=async", "-O", "failover=naive"]
SAFE = ["--workload", "register", "-O", "replication=quorum", "-O", "failover=majority",
        "-O", "read_from=leader"]
#: name -> (args, expectation): a set of (checker, kinds-any-of) that must all be found, or
#: "valid"
LOST_AND_SPLIT = [("lost-writes", {"lost-write"}),
                  ("dual-leaders", {"same-term-leaders", "split-brain-writes"})]
CELLS = {
    "async+naive, partition leader": (UNSAFE_SET + ["--nemesis", "partition"], LOST_AND_SPLIT),
    "async+naive, kill leader": (UNSAFE_SET + ["--nemesis", "kill"], LOST_AND_SPLIT),
    "async, reads any, latency": (["--workload", "register", "-O", "replication=async",
                                   "-O", "read_from=any", "--nemesis", "latency"],
                                  [("stale-reads", {"stale-read"})]),
    "quorum+majority, partition": (SAFE + ["--nemesis", "partition"], "valid"),
    "quorum+majority, kill": (SAFE + ["--nemesis", "kill"], "valid"),
    "quorum+majority, pause": (SAFE + ["--nemesis", "pause"], "valid"),
    "quorum+majority, latency": (SAFE + ["--nemesis", "latency"], "valid"),
}

def rejoins(doc: dict) -> int:
    """Verified member faults of a run: rejoined followers whose log reached the leader's."""
    path = Path(str(doc.get("history") or ""))
    if not path.is_file():
        return 0
    ops = (json.loads(line) for line in path.open())
    return sum(len(op["value"].get("caught_up") or {}) for op in ops
               if op.get("f") == "rejoin" and op.get("type") == "ok")


def valid_with_rejoins(doc: dict) -> bool:
    """Valid, and at least one follower was wiped, rejoined and verified caught up."""
    return doc.get("valid") is True and rejoins(doc) > 0


def member_changes(doc: dict) -> int:
    """Verified membership changes of a run: followers removed, added back and caught up."""
    path = Path(str(doc.get("history") or ""))
    if not path.is_file():
        return 0
    ops = (json.loads(line) for line in path.open())
    return sum(len(op["value"].get("nodes") or {}) for op in ops
               if op.get("f") == "add-member" and op.get("type") == "ok")


def valid_with_changes(doc: dict) -> bool:
    """Valid (so every fault verified), and at least one follower was removed from the
    configuration, added back and verified caught up."""
    return doc.get("valid") is True and member_changes(doc) > 0


def valid_with_all(doc: dict) -> bool:
    """Valid, with a wiped follower verified caught up and a membership change verified: the
    combinations of `--nemesis all` (a 42 s run has a window for each of kvlite's 7 items)."""
    return valid_with_rejoins(doc) and member_changes(doc) > 0


#: the lease demonstration (docs/benchmarks.md "Clock faults"): leader reads under a lease,
#: clients placed on the nodes' sides of the partition (Jepsen's way), the isolated old
#: leader's clock bumped back or slowed while it is cut off; the control has no clock fault
LEASE = SAFE + ["--client-placement", "node", "--nemesis-interval", "5"]
#: member faults: snapshots every 500 entries, so a rejoining follower bootstraps from one
MEMBER = ["-O", "snapshot_every=500", "--nemesis", "member,partition,kill"]
CELLS.update({
    "lease, partition+clock bump": (LEASE + ["--nemesis", "partition+clock", "--clock",
                                             "bump:-10"], [("stale-reads", {"stale-read"})]),
    "lease, partition+clock slow": (LEASE + ["--nemesis", "partition+clock", "--clock",
                                             "rate:0.1"], [("stale-reads", {"stale-read"})]),
    "lease, partition (control)": (LEASE + ["--nemesis", "partition"], "valid"),
    "quorum+majority, member+partition+kill": (SAFE + MEMBER, valid_with_rejoins),
    "async+naive, member+partition+kill": (UNSAFE_SET + MEMBER, [("lost-writes",
                                                                  {"lost-write"})]),
    # membership changes (issue 16): removed followers added back and verified caught up
    "quorum+majority, membership+partition": (
        SAFE + ["-O", "snapshot_every=500", "--nemesis", "membership,partition"],
        valid_with_changes),
    "async+naive, membership+partition": (
        UNSAFE_SET + ["-O", "snapshot_every=500", "--nemesis", "membership,partition"],
        [("lost-writes", {"lost-write"})]),
    # --nemesis all on kvlite: the four kinds plus partition+clock (drift), member+kill and
    # membership+partition (chaos.schedule.ALL_COMBOS)
    "quorum+majority, all": (SAFE + ["-O", "snapshot_every=500", "--nemesis", "all"],
                             valid_with_all),
})
#: target -> (cells, the runtime they are measured on by default)
MATRICES = {"kvlite": (CELLS, "local"), "etcd": (ETCD_CELLS, "docker"),
            "redis": (REDIS_CELLS, "docker"), "postgres": (PG_CELLS, "docker")}


def run_cell(args: list[str], seed: int, time_limit: float, runtime: str, store: str,
             net: str = "auto") -> tuple[int, dict, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "chaos", "run", "--json", "--seed", str(seed),
                           "--time-limit", str(time_limit), "--nemesis-interval", "3",
                           "--quiesce", "2", "--runtime", runtime, "--net", net, "--store", store,
                           *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = {"error": proc.stderr[-500:]}
    return proc.returncode, doc, time.monotonic() - t


def detected(doc: dict, expect) -> bool:
    if callable(expect):
        return bool(expect(doc))
    if expect == "valid":
        return doc.get("valid") is True
    results = doc.get("results") or {}  # the results document (chaos.report.results)
    for checker, kinds in expect:
        found = {a["kind"] for a in (results.get(checker) or {}).get("anomalies", [])}
        if not found & kinds:
            return False
    return True


def perf(doc: dict) -> tuple[float, float, float] | None:
    """(ok ops/s, p50 ms, p99 ms) of a run's client ops, from the perf checker's stats."""
    stats = ((doc.get("results") or {}).get("perf") or {}).get("stats") or {}
    lat = (stats.get("latency_ms") or {}).get("all") or {}
    if "ok_throughput_per_s" not in stats or "p50" not in lat:
        return None
    return stats["ok_throughput_per_s"], lat["p50"], lat["p99"]


def lost(doc: dict) -> int | None:
    """The lost-write count of a run (None: no lost-writes checker ran)."""
    stats = ((doc.get("results") or {}).get("lost-writes") or {}).get("stats") or {}
    return stats.get("lost")


def _why(doc: dict) -> str:
    """The first reason a run was not what the cell expects: the run-level reasons, else the
    first unknown checker's own reason, else the first anomaly kinds, else the error."""
    if doc.get("reasons"):
        return str(doc["reasons"][0])
    results = doc.get("results") or {}
    for name, r in results.items():
        if r.get("reasons"):
            return f"{name}: {r['reasons'][0]}"
    kinds = sorted({f"{name}:{a['kind']}" for name, r in results.items()
                    for a in r.get("anomalies", []) if a.get("severity") == "anomaly"})
    return ", ".join(kinds[:4]) or str(doc.get("error", ""))


def _store(root: str, cell: str, seed: int) -> str:
    """The store of one run: <root>/<cell as a file name>/seed-<n>."""
    slug = "".join(c if c.isalnum() else "-" for c in cell).strip("-")
    path = Path(root) / slug / f"seed-{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.9 * len(xs)))]


def _try(measure, history: str) -> list[float]:
    """A history measurement, or nothing when the run left no readable history."""
    try:
        return list(measure(history))
    except (OSError, ValueError):
        return []


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=15)
    ap.add_argument("--target", default="kvlite", choices=sorted(MATRICES))
    ap.add_argument("--runtime", default="", help="default: the matrix's own (kvlite local, "
                    "etcd docker)")
    ap.add_argument("--cells", default="", help="comma list of cell name prefixes (a "
                    "semicolon list when one holds a comma: 'pg sync off, partition;pg strict')")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--net", default="auto", help="the net backend (chaos run --net)")
    ap.add_argument("--keep", default="", help="keep every run's store (history, results, "
                    "node logs) under this directory, one sub-directory per cell and seed, so "
                    "an odd outcome can be explained afterwards (default: a temporary store)")
    a = ap.parse_args()
    matrix, runtime = MATRICES[a.target]
    a.runtime = a.runtime or runtime
    cells = {k: v for k, v in matrix.items()
             if not a.cells or any(k.startswith(p.strip()) for p in
                                   a.cells.split(";" if ";" in a.cells else ",") if p.strip())}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (args, expect) in cells.items():
            hits, codes, secs, perfs, losses, failovers = 0, [], [], [], [], []
            first_writes: list[float] = []
            for seed in range(a.first_seed, a.first_seed + a.runs):
                store = _store(a.keep or tmp, name, seed)
                code, doc, dt = run_cell(args, seed, a.time_limit, a.runtime, store, a.net)
                ok = detected(doc, expect)
                hits += ok
                codes.append(code)
                secs.append(dt)
                if perf(doc):
                    perfs.append(perf(doc))
                if lost(doc) is not None:
                    losses.append(lost(doc))
                if a.target == "postgres":      # first fault -> new primary, any fault kind
                    times = _try(failover_times, str(doc.get("history") or ""))
                    failovers += times[:1]
                    first_writes += _try(first_write_times, str(doc.get("history") or ""))[:1]
                elif "--nemesis" in args and args[args.index("--nemesis") + 1] == "kill":
                    f_s = failover_s(str(doc.get("history") or ""))
                    if f_s is not None:
                        failovers.append(f_s)
                why = "" if ok else f": {_why(doc)}"
                print(f"{name:32s} seed {seed:3d}: exit {code} {'detected' if ok else 'MISSED'}"
                      f" ({dt:.0f} s, lost {lost(doc)}){why} [{store}]", file=sys.stderr,
                      flush=True)
            want = ("valid" if expect == "valid" else expect.__name__.replace("_", " ")
                    if callable(expect) else "anomalies found")
            load = (f"{sum(p[0] for p in perfs) / len(perfs):.0f} | "
                    f"{_median([p[1] for p in perfs]):.1f} / {_median([p[2] for p in perfs]):.0f}"
                    if perfs else "- | -")
            writes = (f"; first write {_median(first_writes):.1f} / {_p90(first_writes):.1f}"
                      f" ({len(first_writes)} runs)" if first_writes else "")
            extra = (f" {_median(losses):g} / {max(losses)} |" if losses else " - |") + (
                f" {_median(failovers):.1f} / {_p90(failovers):.1f} ({len(failovers)} runs)"
                f"{writes} |" if failovers else " - |")
            rows.append(f"| {name} | {want} | {hits}/{a.runs} | "
                        f"{', '.join(str(c) for c in codes)} | "
                        f"{_median(secs):.0f} / {max(secs):.0f} s | {load} |{extra}")
    print(f"Runtime {a.runtime}, net {a.net}, {a.time_limit:.0f} s of load per run, "
          "nemesis interval 3 s unless the cell sets its own, "
          f"seeds {a.first_seed}..{a.first_seed + a.runs - 1}\n")
    print("| cell | expected | detected | exit codes | wall time median / max | ok ops/s (mean) | "
          "latency p50 / p99 ms (median) | lost writes median / max | "
          "failover s median / p90 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
