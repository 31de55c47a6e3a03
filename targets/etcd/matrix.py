"""The etcd acceptance matrix (DESIGN §7, issue 12): `chaos run` arguments and the verdict each
cell must give. One definition, used by benchmarks/bench_acceptance.py (10 seeded runs per
cell) and by the short docker tests (tests/test_etcd_docker.py).

Expectation: "valid", or a list of (checker, kinds) pairs: each checker must report at least
one anomaly of one of its kinds.

Why the settings: under 200 ms of link latency a write through a follower takes ~1 s (client
-> follower -> leader -> followers and back, then the follower's own apply), hence a 2.5 s
client timeout and a 3 s op timeout. The serializable cell must show stale reads reliably:
a write sent to the cut-off member waits for a leader that never comes (etcd holds the
proposal), so each client blocks for its whole timeout on such a write; a short client timeout
(0.5 s) and 12 clients keep enough reads flowing to every member, the cut-off one included.
"""
from __future__ import annotations

from typing import Any

BASE = ["--target", "etcd", "--op-timeout", "3", "-O", "timeout=2.5"]
REGISTER = BASE + ["--workload", "register"]
STALE = [("stale-reads", {"stale-read"})]

CELLS: dict[str, tuple[list[str], Any]] = {
    "etcd linearizable, partition": (REGISTER + ["--nemesis", "partition"], "valid"),
    "etcd linearizable, kill": (REGISTER + ["--nemesis", "kill"], "valid"),
    "etcd linearizable, pause": (REGISTER + ["--nemesis", "pause"], "valid"),
    "etcd linearizable, latency": (REGISTER + ["--nemesis", "latency"], "valid"),
    "etcd linearizable, all": (REGISTER + ["--nemesis", "all"], "valid"),
    "etcd set, all": (BASE + ["--workload", "set", "--nemesis", "all"], "valid"),
    "etcd linearizable, membership,partition": (
        REGISTER + ["--nemesis", "membership,partition"], "valid"),
    "etcd serializable, partition leader": (
        REGISTER + ["-O", "read_consistency=serializable", "-O", "timeout=0.5",
                    "--concurrency", "12", "--nemesis", "partition",
                    "--partition-shape", "isolate-leader"], STALE),
}
