"""kvlite failover under partitions and pauses (seeds: failover, split brain, discarded writes).

Partitions use the cuttable forwarders of targets.kvlite.testing: every peer link a->b goes
through its own relay, and isolating a node blackholes all of its links. Clients reach nodes
directly, so an isolated leader is still reachable by clients.
"""
from __future__ import annotations

import time

import pytest

from targets.kvlite.client import KvliteClient
from targets.kvlite.testing import Cluster


@pytest.fixture
def cluster(kvlite_cluster):
    """`cluster(**options)` starts a kvlite cluster (see tests/conftest.py)."""
    return kvlite_cluster


def only(c: Cluster, node: str, timeout: float = 0.5) -> KvliteClient:
    """A client that can reach just `node` (what a client next to an isolated leader sees)."""
    return KvliteClient({node: ("127.0.0.1", c.ports[node])}, timeout=timeout)


def test_naive_failover_under_partition_gives_two_leaders_and_loses_writes(cluster):
    c = cluster(n=3, mesh=True, options={"replication": "async", "failover": "naive"})
    cl = only(c, "n1")
    assert cl.invoke({"f": "add", "key": "s", "value": 0})["type"] == "ok"
    c.wait_for(lambda: c.status("n2")["last_index"] == 1, 5, "replication")
    c.isolate("n1")
    new = c.wait_for(lambda: (c.leaders(["n2", "n3"]) or [None])[0], 10, "a second leader")
    # split brain: both report role=leader, with no term at all
    both = {n: c.status(n) for n in ("n1", new)}
    assert all(st["role"] == "leader" and st["term"] is None for st in both.values())
    # the isolated old leader keeps acknowledging writes
    lost = cl.invoke({"f": "add", "key": "s", "value": 1})
    assert lost["type"] == "ok" and lost["node"] == "n1" and lost["meta"]["term"] is None
    assert only(c, new).invoke({"f": "add", "key": "s", "value": 2})["type"] == "ok"
    c.heal()
    # n1 hears of the newer leader, steps down and discards its unreplicated write
    c.wait_for(lambda: c.leaders() == [new], 10, "a single leader after healing")
    c.wait_for(lambda: c.status("n1")["discarded"] >= 1, 10, "n1 to discard")
    value = only(c, new).invoke({"f": "read-set", "key": "s"})["value"]
    assert value == [0, 2]                                   # the acknowledged add of 1 is lost
    assert c.status("n1")["last_index"] == c.status(new)["last_index"]


def test_majority_failover_under_partition_is_safe(cluster):
    c = cluster(n=3, mesh=True, options={"replication": "quorum", "failover": "majority",
                                         "initial_leader": None})
    old = c.wait_for(lambda: (c.leaders() or [None])[0], 10, "an elected leader")
    cl = only(c, old)
    c.wait_for(lambda: cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok", 5,
               "a first write")
    c.isolate(old)
    t0 = time.monotonic()
    seen: dict[int, set[str]] = {}
    acked_after_isolation = []
    rest = [n for n in c.names if n != old]
    new = None
    v = 2
    while time.monotonic() - t0 < 3.0:
        for n in c.names:
            st = c.status(n)
            if st["role"] == "leader":
                seen.setdefault(st["term"], set()).add(n)
                if n != old:
                    new = n
        r = cl.invoke({"f": "write", "key": "k", "value": v})
        v += 1
        if r["type"] == "ok":
            acked_after_isolation.append(time.monotonic() - t0)
        if new and c.status(old)["role"] != "leader" and time.monotonic() - t0 > 1.5:
            break
    assert all(len(ns) == 1 for ns in seen.values()), f"two leaders in one term: {seen}"
    assert new in rest
    assert c.status(old)["role"] != "leader"                  # it stepped down
    assert acked_after_isolation == []                        # it never acked while cut off
    assert only(c, new).invoke({"f": "write", "key": "k", "value": 100})["type"] == "ok"
    assert only(c, old).invoke({"f": "read", "key": "k"})["type"] == "fail"
    c.heal()
    c.wait_for(lambda: len(c.leaders()) == 1 and c.status(old)["leader"] is not None, 10,
               "one leader after healing")
    leader = c.leaders()[0]
    assert only(c, leader).invoke({"f": "read", "key": "k"})["value"] == 100


def test_majority_paused_leader_does_not_serve_stale_reads(cluster):
    c = cluster(n=3, options={"replication": "quorum", "failover": "majority",
                              "initial_leader": None})
    old = c.wait_for(lambda: (c.leaders() or [None])[0], 10, "an elected leader")
    stale = only(c, old, timeout=5.0)
    c.wait_for(lambda: stale.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok", 5,
               "a first write")
    c.pause(old)                                              # SIGSTOP: sockets stay open
    try:
        rest = [n for n in c.names if n != old]
        new = c.wait_for(lambda: (c.leaders(rest) or [None])[0], 10, "a new leader")
        writer = only(c, new)
        c.wait_for(lambda: writer.invoke({"f": "write", "key": "k", "value": 2})["type"] == "ok",
                   5, "a write at the new leader")
        # a read queued at the frozen old leader is processed the moment it wakes
        import threading
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(stale.invoke({"f": "read", "key": "k"})))
        t.start()
        time.sleep(0.2)  # spaces events on purpose: the read goes out while the leader is frozen
    finally:
        c.resume(old)
    t.join(10)
    assert not (out.get("type") == "ok" and out.get("value") == 1), f"stale read: {out}"
    # and it does not ack writes either
    assert stale.invoke({"f": "write", "key": "k", "value": 3})["type"] != "ok" or \
        c.status(old)["role"] == "leader"


def test_majority_kill_leader_elects_another_and_keeps_acked_writes(cluster):
    c = cluster(n=3, options={"replication": "quorum", "failover": "majority",
                              "initial_leader": None})
    old = c.wait_for(lambda: (c.leaders() or [None])[0], 10, "an elected leader")
    cl = c.client()
    c.wait_for(lambda: cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok", 5,
               "a first write")
    for v in range(2, 30):
        assert cl.invoke({"f": "write", "key": "k", "value": v})["type"] == "ok"
    c.kill(old)
    rest = [n for n in c.names if n != old]
    new = c.wait_for(lambda: (c.leaders(rest) or [None])[0], 10, "a new leader")
    st = c.status(new)
    assert st["term"] is not None and st["term"] >= 2
    r = c.wait_for(lambda: (lambda r: r if r["type"] == "ok" else None)(
        only(c, new).invoke({"f": "read", "key": "k"})), 5, "a read at the new leader")
    assert r["value"] == 29
