"""A generator of realistic stores (many run directories) for the archive's tests and benchmark.

Each generated run is laid out as chaos.run writes one: store/<test>/<stamp>/ with
config.json (a real RunConfig of one of a few configurations), results.json (the real results
document `chaos analyze` makes of one of the example histories in histories/, with the perf
figures varied so trends have something to show), history.jsonl (that history), report.html
and nodes/<node>/ logs. Analysing each history once and copying it makes 10,000 runs in
seconds instead of the hours real runs would take.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from chaos.archive.index import record_run
from chaos.run import RunConfig

REPO = Path(__file__).resolve().parents[1]
#: the histories whose analysis gives the results documents, with the verdict they give
SOURCES = ("lost-write-after-failover.jsonl", "valid-set.jsonl", "split-brain-writes.jsonl",
           "stale-follower-read.jsonl", "valid-register.jsonl", "all-info-register.jsonl")
#: (target, options, workload, nemesis, which SOURCES fit it)
CONFIGS = (
    ("kvlite", {"replication": "async", "failover": "naive"}, "set", ["partition"],
     ("lost-write-after-failover.jsonl", "split-brain-writes.jsonl", "valid-set.jsonl")),
    ("kvlite", {"replication": "quorum", "failover": "majority"}, "set", ["partition", "kill"],
     ("valid-set.jsonl",)),
    ("etcd", {"read_consistency": "serializable"}, "register", ["partition"],
     ("stale-follower-read.jsonl", "valid-register.jsonl", "all-info-register.jsonl")),
    ("redis", {}, "set", ["partition"],
     ("lost-write-after-failover.jsonl", "valid-set.jsonl")),
)


@functools.lru_cache(maxsize=1)
def analysed() -> dict[str, dict[str, Any]]:
    """The results document of each source history, as `chaos analyze` makes it (once per
    process: make_store deep-copies what it changes)."""
    from chaos.cli.analyze import analyze_one
    from chaos.store import dumps_json

    out = {}
    for name in SOURCES:
        doc, _, _ = analyze_one(str(REPO / "histories" / name), "auto", None, {})
        out[name] = json.loads(dumps_json(doc))
    return out


def make_store(store: Path, runs: int, *, seed: int = 0, index: bool = True,
               start: datetime | None = None) -> list[str]:
    """Write `runs` run directories under `store`, one every hour from `start`; returns
    their ids ("<test>/<stamp>"). With `index`, each is appended to store/index.jsonl as a
    finished run is (chaos.archive.index.record_run)."""
    rng = random.Random(seed)
    docs = analysed()
    histories = {n: (REPO / "histories" / n).read_bytes() for n in SOURCES}
    start = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = []
    for i in range(runs):
        target, options, workload, nemesis, sources = CONFIGS[i % len(CONFIGS)]
        source = rng.choice(sources)
        when = start + timedelta(hours=i)
        cfg = RunConfig(target=target, target_options=dict(options), workload=workload,
                        runtime="local", nemesis=list(nemesis), seed=rng.randrange(2**31),
                        store=str(store))
        test = cfg.name
        run_dir = store / test / when.strftime("%Y%m%dT%H%M%S")
        (run_dir / "nodes" / "n1").mkdir(parents=True)
        config = {"config": cfg.to_dict(), "target_ref": target,
                  "versions": {"time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}, "argv": []}
        (run_dir / "config.json").write_text(json.dumps(config))
        doc = copy.deepcopy(docs[source])
        doc["run_dir"] = str(run_dir)
        perf = (doc.get("results") or {}).get("perf")
        if perf:  # a system that gets a little faster over the year, with noise
            stats = perf["stats"]
            stats["throughput_per_s"] = round(150 + i * 0.01 + rng.uniform(-20, 20), 3)
            lat = stats.setdefault("latency_ms", {}).setdefault("all", {})
            lat.update({"p50": round(rng.uniform(0.5, 1.5), 3),
                        "p95": round(rng.uniform(3, 6), 3), "p99": round(rng.uniform(8, 20), 3)})
            stats["duration_s"] = round(rng.uniform(30, 40), 3)
        (run_dir / "results.json").write_text(json.dumps(doc))
        (run_dir / "history.jsonl").write_bytes(histories[source])
        (run_dir / "report.html").write_text(
            f"<!doctype html><title>report {test}</title><h1 id='report'>report of {test}/"
            f"{run_dir.name}</h1><p>verdict from {source}</p>")
        (run_dir / "nodes" / "n1" / "node.log").write_text(f"node n1 of run {i}\n")
        os.utime(run_dir / "results.json", (when.timestamp(), when.timestamp()))
        if index:
            record_run(run_dir)
        ids.append(f"{test}/{run_dir.name}")
    return ids


if __name__ == "__main__":
    import sys

    made = make_store(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"{len(made)} runs in {sys.argv[1]}")
