"""targets/redis against real redis-server and redis-sentinel processes (Debian packages),
started from RedisTarget.services() by targets.redis.testing.LocalCluster.

Covers the client's outcome rules on real replies (fail only when the write surely did not
happen), status parsing, and Sentinel failover after SIGKILL of the master.
"""
from __future__ import annotations

import shutil
import signal
import time

import pytest

from targets.redis.testing import LocalCluster

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("redis-server") is None
                                 or shutil.which("redis-sentinel") is None,
                                 reason="apt-get install redis-server redis-sentinel")]


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(n=3, **options):
        c = LocalCluster(n, tmp_path / f"c{len(made)}", {k: str(v) for k, v in options.items()})
        made.append(c)
        return c.start_all()
    yield make
    for c in made:
        c.close()


def until(pred, timeout=20.0, step=0.05, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"{what or 'condition'} not met in {timeout} s")


def add_until_ok(client, value, timeout=20.0):
    return until(lambda: (r if (r := client.invoke({"f": "add", "key": "s", "value": value}))
                          ["type"] == "ok" else None), timeout, what=f"an ok add of {value}")


def test_ops_status_and_final_reads_per_node(cluster):
    c = cluster()
    st = {n: c.status(n) for n in c.nodes}
    assert st["n1"]["role"] == "leader" and st["n1"]["leader"] == "n1"
    assert st["n2"]["role"] == "follower" and st["n2"]["leader"] == "n1"
    assert all(s["term"] is None and s["sentinel_master"] == "n1" for s in st.values())
    cl = c.client()
    assert cl.invoke({"f": "add", "key": "s", "value": 7}) == {
        "type": "ok", "value": 7, "node": "n1", "meta": {}}
    assert cl.invoke({"f": "cas", "key": "k", "value": [None, 1]})["type"] == "ok"
    assert cl.invoke({"f": "cas", "key": "k", "value": [5, 2]})["type"] == "fail"
    assert cl.invoke({"f": "cas", "key": "k", "value": [1, 3]})["type"] == "ok"
    assert cl.invoke({"f": "read", "key": "k", "value": None})["value"] == 3
    for n in c.nodes:                      # each node read directly, replicas included
        r = until(lambda n=n: (r := cl.invoke({"f": "read-set", "key": "s", "value": None,
                                               "node": n, "final": True}))["value"] == [7]
                  and r)
        assert r["node"] == n
    cl.close()


def test_kill_master_fails_over_and_old_master_rejoins(cluster):
    c = cluster()
    cl = c.client()
    assert add_until_ok(cl, 1)["node"] == "n1"
    c.kill("n1")
    t0 = time.monotonic()
    first = add_until_ok(cl, 2)
    assert first["node"] in ("n2", "n3")
    new = first["node"]
    until(lambda: c.role(new) == "leader", what=f"{new} leader")
    assert c.status(new)["sentinel_epoch"] >= 1
    print(f"failover: first write acked by {new} {time.monotonic() - t0:.1f} s after the kill")
    c.start("n1", restart=True)            # its rewritten config files are kept
    until(lambda: c.role("n1") == "follower", timeout=30,
          what="restarted n1 converted to a replica by Sentinel")
    assert c.status("n1")["leader"] == new
    r = until(lambda: (r := cl.invoke({"f": "read-set", "key": "s", "value": None,
                                       "node": "n1"}))["value"] == [1, 2] and r)
    assert r["node"] == "n1"
    cl.close()


def test_min_replicas_refusal_is_fail(cluster):
    c = cluster(min_replicas_to_write=2, min_replicas_max_lag=1)
    cl = c.client()
    assert add_until_ok(cl, 1)["type"] == "ok"
    c.kill("n3")
    r = until(lambda: (r := cl.invoke({"f": "add", "key": "s", "value": 2}))["type"] == "fail"
              and r)
    assert "NOREPLICAS" in r["error"] and r["node"] == "n1"


def test_wait_with_fewer_replicas_is_still_an_acknowledged_write(cluster):
    c = cluster(wait_replicas=2, wait_timeout_ms=50)
    cl = c.client()
    assert add_until_ok(cl, 1)["meta"] == {"wait_acked": 2}
    c.kill("n3")
    r = cl.invoke({"f": "add", "key": "s", "value": 2})
    assert r["type"] == "ok" and r["meta"] == {"wait_acked": 1}


def test_no_answer_after_sending_is_info_and_refused_is_fail(cluster):
    c = cluster(timeout=0.3)
    cl = c.client()
    assert add_until_ok(cl, 1)["type"] == "ok"
    c.signal("n1", signal.SIGSTOP)         # the master (and its Sentinel) stop answering
    try:
        r = cl.invoke({"f": "add", "key": "s", "value": 2})
        assert r["type"] == "info" and r["error"].startswith("indeterminate")
    finally:
        c.signal("n1", signal.SIGCONT)
    for n in c.nodes:
        c.kill(n)
    r = cl.invoke({"f": "add", "key": "s", "value": 3})
    assert r["type"] == "fail" and "no Sentinel named a usable master" in r["error"]
    assert cl.invoke({"f": "read-set", "key": "s", "value": None})["type"] == "fail"


def test_failover_moves_the_client_and_readonly_is_fail(cluster):
    c = cluster(refresh_ms=0)
    cl = c.client()
    assert add_until_ok(cl, 1)["node"] == "n1"
    from targets.redis.client import call
    # a manual failover: Sentinel promotes a replica, demotes n1 and kills its client
    # connections, so the client rediscovers before its next write
    import redis

    def failover():
        try:
            return call(c.endpoints.port("n2", "sentinel"), 2.0, "SENTINEL", "FAILOVER", "chaos")
        except redis.ResponseError:        # NOGOODSLAVE until Sentinel has seen the replicas
            return None
    until(failover, step=0.2)
    until(lambda: c.role("n1") == "follower", what="n1 demoted")
    new = add_until_ok(cl, 2)["node"]
    assert new in ("n2", "n3")
    # a master demoted behind Sentinel's back (its clients may be dropped): the client asks a
    # Sentinel that still names it (Sentinel polls INFO every 10 s), writes: READONLY, fail
    other = ({"n2", "n3"} - {new}).pop()
    peer = c.endpoints[other]
    try:
        call(c.endpoints[new], 2.0, "REPLICAOF", peer.host, peer.port)
    except redis.ConnectionError:          # Redis may reset its clients, this one too
        pass
    r = cl.invoke({"f": "add", "key": "s", "value": 3})
    assert r["type"] == "fail" and r["error"].startswith("ReadOnlyError") and r["node"] == new


def test_replica_reads_go_to_a_replica_sentinel_lists(cluster):
    c = cluster(read_from="replica")
    cl = c.client()
    assert add_until_ok(cl, 1)["node"] == "n1"
    nodes = {cl.invoke({"f": "read-set", "key": "s", "value": None})["node"] for _ in range(20)}
    assert nodes and nodes <= {"n2", "n3"}
