"""The Redis + Sentinel acceptance matrix (DESIGN §7, issue 11): `chaos run` arguments and what
each cell must show. One definition, used by benchmarks/bench_acceptance.py --target redis (10
seeded runs per cell) and by the short docker tests (tests/test_redis_docker.py).

Expectation: "valid"; a list of (checker, kinds) pairs, each checker reporting at least one
anomaly of one of its kinds; or a predicate on the results document (the kill cell: a
failover was observed).

Why the settings: a partition must outlast Sentinel's failover (down_after_ms 1 s, then the
vote and the promotion: 2-5 s) or there is no second master to find, hence an 8 s nemesis
interval (8 s calm, 8 s fault). Partitions drop bytes silently (`--partition-mode drop`), as a
real network partition does (and Jepsen's iptables DROP): with "refuse" the master sees its
replica connections close at once, so min-replicas-to-write refuses writes at once, which is
a politer fault than the one Redis' documentation warns about (a master that notices the
lost replicas only after min-replicas-max-lag seconds). The set workload is used because an
element missing from every final read names exactly one lost acknowledged write.
"""
from __future__ import annotations

import json
from typing import Any

BASE = ["--target", "redis", "--workload", "set", "--nemesis-interval", "8"]
PARTITION = ["--nemesis", "partition", "--partition-shape", "isolate-leader",
             "--partition-mode", "drop"]
LOST = [("lost-writes", {"lost-write"})]
LOST_SPLIT = LOST + [("dual-leaders", {"split-brain-writes"})]
WRITES = ("add", "write", "cas")


def failover_s(history_path: str) -> float | None:
    """Seconds from the first kill (its completion) to the first write acknowledged by
    another node than the killed one: the failover time a client sees. None: no kill, or no
    write acknowledged by another node afterwards."""
    killed, t_kill = None, None
    try:
        with open(history_path) as fh:
            for line in fh:
                op = json.loads(line)
                if t_kill is None:
                    if (op.get("process") == "nemesis" and op.get("f") == "kill"
                            and op.get("type") == "ok"):
                        killed = (op.get("value") or {}).get("node")
                        t_kill = op["time"]
                elif (op.get("type") == "ok" and op.get("f") in WRITES
                      and op.get("node") not in (None, killed)):
                    return (op["time"] - t_kill) / 1e9
    except (OSError, ValueError):
        return None
    return None


def failover_observed(doc: dict[str, Any]) -> bool:
    """The kill cell's expectation: some write was acknowledged by a new master."""
    return failover_s(str(doc.get("history") or "")) is not None


CELLS: dict[str, tuple[list[str], Any]] = {
    "redis defaults, partition master": (BASE + PARTITION, LOST_SPLIT),
    "redis min-replicas 1 lag 10, partition master": (
        BASE + PARTITION + ["-O", "min_replicas_to_write=1", "-O", "min_replicas_max_lag=10"],
        LOST),
    "redis WAIT 1, partition master": (BASE + PARTITION + ["-O", "wait_replicas=1"], LOST),
    "redis defaults, kill master": (BASE + ["--nemesis", "kill"], failover_observed),
    "redis defaults, none": (BASE + ["--nemesis", "none"], "valid"),
}
