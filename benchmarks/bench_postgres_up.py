"""PostgreSQL + Patroni start-up and rejoin, read from kept run directories (no new runs).

    python benchmarks/bench_postgres_up.py /tmp/pg13/matrix [/tmp/pg13/kill ...]

Every run directory under the given roots (a `bench_acceptance.py --keep` tree or a `chaos
run --store`) that holds config.json, history.jsonl and nodes/*/patroni.out is read:

- containers: the run's start (config.json's time, written before the runtime starts) to
  the first etcd member's first log line (the docker runtime's network, containers, sshd and
  code upload);
- primary: the first etcd log line to Patroni's "initialized a new cluster" (etcd quorum,
  leader key, initdb, the post_bootstrap script);
- cluster up: the first etcd log line to the history's start, i.e. chaos's wait for one
  primary with every standby streaming (pg_basebackup clones) and the tables created;
- rejoins: old primaries that Patroni ran pg_rewind on after a failover, and how many of those
  came back as streaming standbys ("following a leader" after the rewind).

And where the rest of a run's wall time goes (`--phases`), from the same files:

- load: the history's start to the last client op before the final reads (the workload and
  its fault schedule);
- settle: then to the first final read (the heal, --quiesce, and before_final_reads: the wait
  for every standby, the old primary included, to stream and replay the primary's WAL);
- finals: the final reads;
- teardown+check: the history's last op to results.json (nodes stopped, node logs collected,
  containers and network removed, the checkers run);
- report: results.json to report.html (the HTML report and its plots);
- total: the run's start (config.json) to report.html (`chaos run`'s wall time but for the
  interpreter's start and exit).

Prints one Markdown row per run and the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path

_PATRONI_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _patroni_time(line: str) -> float | None:
    m = _PATRONI_TS.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(
        tzinfo=timezone.utc).timestamp()


def _etcd_start(node_dir: Path) -> float | None:
    try:
        with open(node_dir / "etcd.out") as fh:
            for line in fh:
                try:
                    ts = json.loads(line).get("ts")
                except ValueError:
                    continue
                if ts:
                    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except OSError:
        return None
    return None


def _history_start(history: Path) -> float:
    """The history's wall-clock origin: its file's last write minus its last op's time."""
    last = 0
    with open(history, "rb") as fh:
        fh.seek(max(0, os.path.getsize(history) - 1_000_000))
        for line in fh.read().splitlines()[1:]:
            try:
                last = max(last, int(json.loads(line)["time"]))
            except (ValueError, KeyError):
                continue
    return os.path.getmtime(history) - last / 1e9


def _after_load(history: Path, origin: float) -> dict[str, float]:
    """Wall-clock times (s since the epoch) of the load's end (the last client op before the
    first final read), the first final read and the history's last op."""
    load_end = first_final = last = 0
    with open(history) as fh:
        for line in fh:
            op = json.loads(line)
            t = int(op["time"])
            last = max(last, t)
            if op.get("final"):
                first_final = first_final or t
            elif not first_final and isinstance(op.get("process"), int):
                load_end = t
    return {"load_end": origin + load_end / 1e9, "first_final": origin + first_final / 1e9,
            "last": origin + last / 1e9}


def phases(run_dir: Path) -> dict[str, float]:
    """Seconds per phase of one kept run (see the module doc, --phases)."""
    config = json.loads((run_dir / "config.json").read_text())
    started = datetime.fromisoformat(config["versions"]["time"].replace("Z", "+00:00"))
    history = run_dir / "history.jsonl"
    origin = _history_start(history)
    t = _after_load(history, origin)
    results = os.path.getmtime(run_dir / "results.json")
    report = os.path.getmtime(run_dir / "report.html")
    return {"setup": origin - started.timestamp(), "load": t["load_end"] - origin,
            "settle": t["first_final"] - t["load_end"], "finals": t["last"] - t["first_final"],
            "teardown+check": results - t["last"], "report": report - results,
            "total": report - started.timestamp()}


def measure(run_dir: Path) -> dict[str, float | int | str]:
    config = json.loads((run_dir / "config.json").read_text())
    started = datetime.fromisoformat(config["versions"]["time"].replace("Z", "+00:00"))
    nodes = sorted(p for p in (run_dir / "nodes").iterdir() if p.is_dir())
    etcd = min(t for t in (_etcd_start(n) for n in nodes) if t is not None)
    initialized, rewound, rejoined = None, 0, 0
    for node in nodes:
        rewinding = False
        for line in (node / "patroni.out").read_text(errors="replace").splitlines():
            if "initialized a new cluster" in line and initialized is None:
                initialized = _patroni_time(line)
            elif "running pg_rewind from" in line and not rewinding:
                rewinding, rewound = True, rewound + 1
            elif rewinding and "following a leader" in line:
                rewinding, rejoined = False, rejoined + 1
    return {"run": str(run_dir), "containers": etcd - started.timestamp(),
            "primary": (initialized or float("nan")) - etcd,
            "up": _history_start(run_dir / "history.jsonl") - etcd,
            "rewound": rewound, "rejoined": rejoined}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--phases", action="store_true",
                    help="where each run's wall time goes (setup, load, settle, final reads, "
                    "teardown+check, report) instead of the start-up table")
    a = ap.parse_args()
    if a.phases:
        print_phases(a.roots)
        return
    rows = []
    for root in a.roots:
        for config in sorted(Path(root).rglob("config.json")):
            run = config.parent
            if (run / "history.jsonl").exists() and (run / "nodes").is_dir():
                try:
                    rows.append(measure(run))
                except (OSError, ValueError, KeyError) as exc:
                    print(f"skipped {run}: {type(exc).__name__}: {exc}")
    print("| run | containers s | primary s | cluster up s | pg_rewind / rejoined |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['containers']:.1f} | {r['primary']:.1f} | {r['up']:.1f} | "
              f"{r['rewound']} / {r['rejoined']} |")
    if rows:
        med = {k: statistics.median(float(r[k]) for r in rows)
               for k in ("containers", "primary", "up")}
        print(f"\n{len(rows)} runs; median containers {med['containers']:.1f} s, primary "
              f"{med['primary']:.1f} s, cluster up {med['up']:.1f} s (max "
              f"{max(float(r['up']) for r in rows):.1f} s); pg_rewind on "
              f"{sum(int(r['rewound']) for r in rows)} old primaries, "
              f"{sum(int(r['rejoined']) for r in rows)} rejoined as standbys")


def print_phases(roots: list[str]) -> None:
    """One row per kept run with its phase times, then the medians and maxima."""
    names = ("setup", "load", "settle", "finals", "teardown+check", "report", "total")
    rows = []
    for root in roots:
        for config in sorted(Path(root).rglob("config.json")):
            run = config.parent
            if all((run / f).exists() for f in ("history.jsonl", "results.json", "report.html")):
                try:
                    rows.append((str(run), phases(run)))
                except (OSError, ValueError, KeyError) as exc:
                    print(f"skipped {run}: {type(exc).__name__}: {exc}")
    print("| run | " + " | ".join(f"{n} s" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for run, ph in rows:
        print(f"| {run} | " + " | ".join(f"{ph[n]:.1f}" for n in names) + " |")
    if rows:
        print(f"\n{len(rows)} runs, median (max): " + "; ".join(
            f"{n} {statistics.median(ph[n] for _, ph in rows):.1f} "
            f"({max(ph[n] for _, ph in rows):.1f})" for n in names))


if __name__ == "__main__":
    main()
