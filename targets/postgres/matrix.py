"""The PostgreSQL + Patroni acceptance matrix (DESIGN §7, issue 13): `chaos run` arguments and
the verdict each cell must give, plus the failover time read back from a run's history. One
definition, used by benchmarks/bench_acceptance.py / bench_postgres.py (seeded runs per cell)
and by the short docker tests (tests/test_postgres_docker.py).

Expectation: "valid", or a list of (checker, kinds) pairs: each checker must report at least
one anomaly of one of its kinds.

Why the settings: Patroni's timing is shortened to ttl=6, loop_wait=1, retry_timeout=2
(1 + 2*2 <= 6, Patroni's rule) so a failover fits in a fault window; a fault lasts 12 s
(--nemesis-interval 12), longer than ttl plus the lease extension etcd grants when its own
Raft leader dies with the node (a new etcd leader renews every lease once), so the standbys
do promote while the primary is gone. Clients write as fast as they can (--rate 0, 8
clients): the asynchronous window a kill catches is the WAL the primary flushed and
acknowledged but had not yet sent, a few milliseconds, so many commits per second make it
hold some. A kill alone catches that window in about half the runs (5-19 commits when it
does; docs/benchmarks.md), so the async kill cell kills the primary while its standbys
replicate over slow links: `latency+kill` puts 200 ms (+-50) on every node link, then
kills the primary's node at once, so the last ~200 ms of acknowledged commits are still on
their way to the standbys when the primary dies: the loss async replication allows, bounded
by maximum_lag_on_failover, on a lag a WAN or a busy standby host gives every day. 16
clients. The criterion stays the same: an acknowledged add absent from every final read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TIMING = ["-O", "ttl=6", "-O", "loop_wait=1", "-O", "retry_timeout=2"]
BASE = ["--target", "postgres", "--rate", "0", "--concurrency", "8",
        "--nemesis-interval", "12", *TIMING]
ASYNC_SET = BASE + ["--workload", "set", "-O", "synchronous_mode=off"]
#: the strict cells run Patroni's `etcd` (v2 API) driver: Patroni 3.0.2's etcd3 driver can
#: overwrite the leader key a promoted standby just took when a paused primary resumes (a
#: real hazard of that version, fixed in 3.0.3: a forked timeline, a divergent replica;
#: docs/targets.md), and the safe configuration of the packaged version is what these cells
#: must show valid. The async and stale-read cells keep the default (etcd3): the loss and the
#: stale reads they show are the replication mode's, whichever driver holds the key.
SAFE_DCS = ["-O", "dcs=etcd"]
#: strict cells: a 36 s load, so 12 s after the 12-24 s fault are left for a new primary that
#: demoted itself once after the heal (a stale leader key read from the old primary's etcd
#: member, docs/targets.md) to take the key back: at 30 s 2 of 10 partition runs ended
#: unknown that way, at 36 s none (docs/benchmarks.md, run 3)
STRICT_SET = BASE + ["--workload", "set", "-O", "synchronous_mode=strict", *SAFE_DCS,
                     "--time-limit", "36"]
ANY_READS = BASE + ["--workload", "register", "-O", "read_from=any"]
#: the async kill cell: 16 clients; the primary killed while its standbys lag ~200 ms
#: (a 36 s load: after the 12-24 s fault, 12 s for the latency-slowed etcd and Patroni to
#: settle, so the run does not end with the cluster still failing over: unknown)
LAGGING_KILL = ["--concurrency", "16", "--nemesis", "latency+kill", "--time-limit", "36"]
LOST = [("lost-writes", {"lost-write"})]
STALE = [("stale-reads", {"stale-read"})]

CELLS: dict[str, tuple[list[str], Any]] = {
    "pg sync off, partition primary": (
        ASYNC_SET + ["--nemesis", "partition", "--partition-shape", "isolate-leader"], LOST),
    "pg sync off, kill primary": (ASYNC_SET + LAGGING_KILL, LOST),
    "pg strict, partition": (
        STRICT_SET + ["--nemesis", "partition", "--partition-shape", "isolate-leader"], "valid"),
    "pg strict, kill": (STRICT_SET + ["--nemesis", "kill"], "valid"),
    "pg strict, pause": (STRICT_SET + ["--nemesis", "pause"], "valid"),
    "pg reads any, latency": (ANY_READS + ["--nemesis", "latency"], STALE),
    "pg reads any, partition": (
        ANY_READS + ["--nemesis", "partition", "--partition-shape", "isolate-leader"], STALE),
}

#: nemesis ops that take the primary away (their ok completion: the fault is in place)
_FAULTS = ("kill", "pause", "start-pause", "start-partition")


#: client ops that write (an ok one was acknowledged by a read-write primary)
_WRITES = ("add", "write", "cas")


def _read(history: str | Path) -> tuple[list[tuple[float, str]], list[tuple[float, str, Any]],
                                         list[tuple[float, str]]]:
    """(faults as (in-place time, the primary hit), leader observations as (time, node,
    term), acknowledged writes as (time, node)) of a recorded history, times in seconds."""
    faults: list[tuple[float, str]] = []
    leaders: list[tuple[float, str, Any]] = []
    writes: list[tuple[float, str]] = []
    with open(history) as fh:
        for line in fh:
            op = json.loads(line)
            if op.get("type") != "ok":
                continue
            if op.get("process") == "nemesis" and op.get("f") in _FAULTS:
                faults.append((op["time"] / 1e9, _victim(op.get("value") or {})))
            elif op.get("process") == "monitor":
                value = op.get("value") or {}
                if value.get("role") == "leader":
                    leaders.append((op["time"] / 1e9, str(op.get("node")), value.get("term")))
            elif op.get("f") in _WRITES and op.get("node"):
                writes.append((op["time"] / 1e9, str(op["node"])))
    return faults, leaders, writes


def failover_times(history: str | Path) -> list[float]:
    """Seconds from each fault that took the primary away (kill, pause, or a partition
    isolating it) to the monitor's first sight of another node leading in a later timeline.

    Measured from the fault's ok completion (the fault fully in place: applying a partition
    to every proxied port can itself take a second or more), so it is the failover Patroni
    needs, not the time the nemesis took.

    Read from the recorded history (nemesis and monitor ops); a fault after which no new
    primary was seen is left out (the caller reports how many faults it measured).
    """
    faults, leaders, _ = _read(history)
    out = []
    for start, victim in faults:
        before = [t for (ts, n, t) in leaders if ts <= start and n == victim and t is not None]
        term = before[-1] if before else None
        for ts, node, t in leaders:
            if ts > start and node != victim and (term is None or (t is not None and t > term)):
                out.append(ts - start)
                break
    return out


def first_write_times(history: str | Path) -> list[float]:
    """Seconds from each fault that took the primary away to the first write a client saw
    acknowledged by another node: the failover as an application lives it (writes go to the
    read-write session only, so that node was the new primary). Same fault times as
    `failover_times`; a fault after which no other node acknowledged a write is left out."""
    faults, _, writes = _read(history)
    out = []
    for start, victim in faults:
        for ts, node in writes:
            if ts > start and node != victim:
                out.append(ts - start)
                break
    return out


def _victim(value: dict[str, Any]) -> str:
    """The node a kill/pause hit, or the isolated side of a partition (one node)."""
    if "node" in value:
        return str(value["node"])
    for side in value.get("partition") or value.get("groups") or []:
        if isinstance(side, list) and len(side) == 1:
            return str(side[0])
    return ""
