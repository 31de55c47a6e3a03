"""kvlite recovery: catch-up after restart, new follower from snapshot + log, damaged logs."""
from __future__ import annotations

import os

import pytest

from targets.kvlite.testing import Cluster


@pytest.fixture
def cluster(kvlite_cluster):
    """`cluster(**options)` starts a kvlite cluster (see tests/conftest.py)."""
    return kvlite_cluster


def converged(c: Cluster, a: str, b: str) -> bool:
    sa, sb = c.status(a), c.status(b)
    return sa["commit_index"] == sb["commit_index"] == sb["last_index"] and sa["keys"] == sb["keys"]


def test_catch_up_after_restart_converges(cluster):
    c = cluster(options={"replication": "async", "failover": "none", "read_from": "any"})
    cl = c.client()
    for i in range(10):
        assert cl.invoke({"f": "write", "key": f"early{i}", "value": i})["type"] == "ok"
    c.wait_for(lambda: c.status("n3")["last_index"] == 10, 5, "n3 to replicate")
    c.kill("n3")
    for i in range(1000):
        assert cl.invoke({"f": "write", "key": f"k{i}", "value": i})["type"] == "ok"
    c.start("n3")
    c.wait_up("n3")
    c.wait_for(lambda: converged(c, "n1", "n3"), 20, "n3 to catch up")
    log = open(c.base / "n3" / "node.log").read()
    assert "started as follower (log to 10" in log          # replayed its own log first
    st = c.status("n3")
    assert st["keys"] == 1010 and st["snapshot_index"] == 0   # caught up from the log
    for i in (0, 517, 999):
        assert c.call("n3", {"op": "read", "key": f"k{i}"})["value"] == i


def test_new_follower_bootstraps_from_snapshot_plus_log(cluster):
    c = cluster(start=["n1", "n2"], options={"replication": "async", "failover": "none",
                                            "read_from": "any", "snapshot_every": 200})
    cl = c.client()
    for i in range(450):
        assert cl.invoke({"f": "write", "key": f"k{i}", "value": i})["type"] == "ok"
    for i in range(5):
        assert cl.invoke({"f": "add", "key": "set", "value": i})["type"] == "ok"
    st1 = c.status("n1")
    assert st1["snapshot_index"] == 400                      # the leader compacted its log
    c.start("n3")                                            # a brand-new, empty follower
    c.wait_up("n3")
    c.wait_for(lambda: converged(c, "n1", "n3"), 20, "n3 to bootstrap")
    log = open(c.base / "n3" / "node.log").read()
    assert "installing snapshot from n1 at index 400" in log
    assert c.call("n3", {"op": "read", "key": "k3"})["value"] == 3         # from the snapshot
    assert c.call("n3", {"op": "read", "key": "k449"})["value"] == 449     # from the log after
    assert c.call("n3", {"op": "read-set", "key": "set"})["value"] == [0, 1, 2, 3, 4]
    # and it keeps following live updates
    assert cl.invoke({"f": "write", "key": "live", "value": 1})["type"] == "ok"
    c.wait_for(lambda: c.call("n3", {"op": "read", "key": "live"})["value"] == 1, 5, "live")


def _single(cluster, **opts):
    return cluster(n=1, options={"failover": "none", **opts})


@pytest.mark.parametrize("damage, problem", [
    ("flip", "checksum mismatch"),
    ("cut", "truncated last entry"),
    ("garbage", "malformed"),
])
def test_damaged_log_tail_is_truncated_and_reported(cluster, damage, problem):
    c = _single(cluster)
    cl = c.client()
    for i in range(10):
        assert cl.invoke({"f": "write", "key": "k", "value": i})["type"] == "ok"
    c.kill("n1")
    path = c.base / "n1" / "log.jsonl"
    data = path.read_bytes()
    if damage == "flip":      # one bit of the last entry's body
        data = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
    elif damage == "cut":     # a crash in the middle of a write
        data = data[:-7]
    else:
        data = data + b"zzzz not an entry\n"
    path.write_bytes(data)
    c.start("n1")
    st = c.wait_up("n1")
    rec = st["log_recovery"]
    assert rec is not None and problem in rec["problem"]
    expected_last = 10 if damage == "garbage" else 9
    assert st["last_index"] == expected_last and rec["last_good_index"] == expected_last
    assert rec["bytes_dropped"] > 0
    assert "log tail damaged at start-up, truncated" in open(c.base / "n1" / "node.log").read()
    assert c.call("n1", {"op": "read", "key": "k"})["value"] == expected_last - 1
    # the truncated file is clean again: the next start reports nothing
    assert cl.invoke({"f": "write", "key": "k", "value": 42})["type"] == "ok"
    c.restart("n1")
    st = c.status("n1")
    assert st["log_recovery"] is None and st["last_index"] == expected_last + 1


def test_fsync_always_acks_and_survives_kill(cluster):
    c = _single(cluster, fsync="always")
    cl = c.client()
    for i in range(50):
        assert cl.invoke({"f": "write", "key": "k", "value": i})["type"] == "ok"
    c.restart("n1")
    assert c.call("n1", {"op": "read", "key": "k"})["value"] == 49
    assert os.path.getsize(c.base / "n1" / "log.jsonl") > 0
