"""kvlite replication modes against real node processes (seeds: sync / async / semi-sync)."""
from __future__ import annotations

import time

import pytest

from targets.kvlite.testing import Cluster


@pytest.fixture
def cluster(kvlite_cluster):
    """`cluster(**options)` starts a kvlite cluster (see tests/conftest.py)."""
    return kvlite_cluster


def new_leader(c: Cluster, among: list[str], timeout: float = 10.0) -> str:
    return c.wait_for(lambda: (c.leaders(among) or [None])[0], timeout, "a new leader")


def read_on(c: Cluster, node: str, key: str):
    return c.call(node, {"op": "read", "key": key})


def test_async_kill_leader_after_acked_write_loses_it(cluster):
    c = cluster(options={"replication": "async", "failover": "naive", "read_from": "any"})
    cl = c.client()
    assert cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok"
    c.wait_for(lambda: read_on(c, "n2", "k")["value"] == 1, 5, "replication of 1")
    c.call("n1", {"op": "pause-replication", "value": True})   # a replication lag, on demand
    done = cl.invoke({"f": "write", "key": "k", "value": 2})
    assert done["type"] == "ok" and done["node"] == "n1"        # acknowledged by the leader...
    c.kill("n1")
    leader = new_leader(c, ["n2", "n3"])
    after = read_on(c, leader, "k")
    assert after["type"] == "ok" and after["value"] == 1        # ...and gone after failover
    # the old leader rejoins as a follower and discards its unreplicated write (reported)
    c.start("n1")       # naive: it led when it died, so it resumes leading (no fencing)...
    c.wait_for(lambda: c.status("n1")["discarded"] >= 1, 10, "n1 to discard its write")
    assert "resuming as leader" in (c.base / "n1" / "node.log").read_text()
    st = c.status("n1")
    assert st["role"] == "follower" and st["leader"] == leader
    assert read_on(c, "n1", "k")["value"] == 1


def test_sync_kill_leader_after_acked_write_keeps_it(cluster):
    c = cluster(options={"replication": "sync", "failover": "naive"})
    cl = c.client()
    for v in range(1, 6):
        assert cl.invoke({"f": "write", "key": "k", "value": v})["type"] == "ok"
    c.kill("n1")                                               # right after the last ack
    new_leader(c, ["n2", "n3"])
    after = c.client().invoke({"f": "read", "key": "k"})
    assert after["type"] == "ok" and after["value"] == 5


def test_sync_with_a_stopped_follower_blocks_writes(cluster):
    c = cluster(options={"replication": "sync", "failover": "none", "commit_wait_ms": 10000})
    cl = c.client(timeout=1.0)
    assert cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok"
    c.pause("n3")                                              # SIGSTOP one follower
    try:
        done = cl.invoke({"f": "write", "key": "k", "value": 2})
        assert done["type"] == "info" and "indeterminate" in done["error"]
        st = c.status("n1")
        assert st["last_index"] > st["commit_index"]          # appended, not committed
    finally:
        c.resume("n3")
    c.wait_for(lambda: c.status("n1")["commit_index"] == c.status("n1")["last_index"], 10,
               "the blocked write to commit once n3 is back")
    assert c.client().invoke({"f": "write", "key": "k", "value": 3})["type"] == "ok"


def test_async_writes_continue_with_a_stopped_follower(cluster):
    c = cluster(options={"replication": "async", "failover": "none"})
    c.pause("n3")
    try:
        cl = c.client(timeout=1.0)
        for v in range(20):
            assert cl.invoke({"f": "write", "key": "k", "value": v})["type"] == "ok"
    finally:
        c.resume("n3")


def test_semi_sync_moves_the_sync_role_when_the_sync_follower_stops(cluster):
    c = cluster(options={"replication": "semi-sync", "failover": "none"})
    cl = c.client(timeout=2.0)
    assert cl.invoke({"f": "write", "key": "k", "value": 0})["type"] == "ok"
    sync = c.wait_for(lambda: c.status("n1")["sync_follower"], 5, "a sync follower")
    other = ({"n2", "n3"} - {sync}).pop()
    c.pause(sync)
    try:
        results = [cl.invoke({"f": "write", "key": "k", "value": v})["type"] for v in range(1, 11)]
        assert results.count("ok") >= 9, results
        st = c.status("n1")
        assert st["sync_follower"] == other
        assert st["commit_index"] == st["last_index"]
        assert c.status(other)["last_index"] == st["last_index"]
    finally:
        c.resume(sync)


def test_quorum_acks_with_one_follower_down(cluster):
    c = cluster(options={"replication": "quorum", "failover": "none"})
    c.kill("n3")
    cl = c.client()
    t0 = time.monotonic()
    for v in range(20):
        assert cl.invoke({"f": "write", "key": "k", "value": v})["type"] == "ok"
    assert time.monotonic() - t0 < 5
    c.kill("n2")
    assert cl.invoke({"f": "write", "key": "k", "value": 99})["type"] == "info"


def test_node_routing_forwards_to_the_leader(cluster):
    c = cluster(options={"routing": "forward", "failover": "none"})
    cl = c.client(routing="forward", prefer="n2")
    done = cl.invoke({"f": "write", "key": "k", "value": 7})
    assert done["type"] == "ok" and done["node"] == "n1"
    assert cl.invoke({"f": "read", "key": "k"})["value"] == 7


def test_async_reads_from_any_node_are_stale_under_replication_latency(cluster):
    c = cluster(mesh=True, options={"replication": "async", "failover": "none",
                                    "read_from": "any", "heartbeat_ms": 50,
                                    "election_timeout_ms": 2000})
    cl = c.client()
    assert cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok"
    c.wait_for(lambda: c.call("n3", {"op": "read", "key": "k"})["value"] == 1, 5, "replication")
    c.set_latency("n1", "n3", 0.5)
    c.wait_for(lambda: c.forwarders[("n1", "n3")].delay == 0.5, 5, "the latency applied")
    assert cl.invoke({"f": "write", "key": "k", "value": 2})["type"] == "ok"   # acked...
    stale = c.call("n3", {"op": "read", "key": "k"})                            # ...then read
    assert stale["type"] == "ok" and stale["value"] == 1                        # the old value
    c.wait_for(lambda: c.call("n3", {"op": "read", "key": "k"})["value"] == 2, 5, "convergence")


def test_leader_reads_in_majority_mode_are_not_stale_under_latency(cluster):
    c = cluster(mesh=True, options={"replication": "quorum", "failover": "majority",
                                    "initial_leader": None, "election_timeout_ms": 1500})
    leader = c.wait_for(lambda: (c.leaders() or [None])[0], 10, "an elected leader")
    for b in c.names:
        if b != leader:
            c.set_latency(leader, b, 0.1)
    cl = c.client()
    for v in range(5):
        assert cl.invoke({"f": "write", "key": "k", "value": v})["type"] == "ok"
        r = c.client().invoke({"f": "read", "key": "k"})
        assert r["type"] == "ok" and r["value"] == v
    assert c.call([n for n in c.names if n != leader][0],
                  {"op": "read", "key": "k"})["error"] == "not leader"
