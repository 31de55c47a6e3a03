"""EtcdClient and EtcdTarget against real etcd members on 127.0.0.1 (Debian's etcd-server)."""
from __future__ import annotations

import random
import shutil

import pytest

from chaos.errors import BadInput
from chaos.target import check_status
from targets.etcd.client import EtcdClient
from targets.etcd.plugin import EtcdTarget

etcd_installed = pytest.mark.skipif(shutil.which("etcd") is None,
                                    reason="etcd not installed (apt-get install etcd-server)")


@pytest.mark.parametrize("raw,needle", [
    ({"read_consistency": "stale"}, "-O read_consistency=stale: must be one of"),
    ({"endpoints": "two"}, "-O endpoints=two"),
    ({"election_timeout_ms": "400"}, "-O election_timeout_ms=400: etcd requires at least 5"),
    ({"election_timeout_ms": "60000"}, "election_timeout_ms"),
    ({"heartbeat_ms": "300"}, "-O election_timeout_ms=1000: etcd requires"),
    ({"timeout": "soon"}, "-O timeout=soon"),
    ({"consistency": "serializable"}, "-O consistency: unknown option for target etcd"),
])
def test_bad_options_one_line(raw, needle):
    with pytest.raises(BadInput) as err:
        EtcdTarget().validate_options(raw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_good_options_typed():
    o = EtcdTarget().validate_options({"read_consistency": "serializable",
                                       "election_timeout_ms": "500", "heartbeat_ms": "100"})
    assert o["read_consistency"] == "serializable" and o["election_timeout_ms"] == 500


@pytest.fixture
def etcd3(tmp_path):
    from targets.etcd.testing import LocalEtcd

    c = LocalEtcd(tmp_path, 3).start_all()   # etcd's default timing: no spurious elections
                                             # on a loaded machine
    try:
        c.wait(c.leader, 60, "a leader")
        yield c
    finally:
        c.close()


@etcd_installed
@pytest.mark.integration
def test_register_and_set_ops(etcd3):
    cl = EtcdClient(etcd3.endpoints, timeout=5.0, rng=random.Random(1))
    try:
        assert cl.invoke({"f": "read", "key": "k"})["value"] is None
        assert cl.invoke({"f": "cas", "key": "k", "value": [None, 1]})["type"] == "ok"
        assert cl.invoke({"f": "cas", "key": "k", "value": [None, 2]})["type"] == "fail"
        assert cl.invoke({"f": "cas", "key": "k", "value": [7, 2]})["type"] == "fail"
        assert cl.invoke({"f": "cas", "key": "k", "value": [1, 3]})["type"] == "ok"
        w = cl.invoke({"f": "write", "key": "k", "value": 4})
        assert w["type"] == "ok" and w["node"] in etcd3.names and w["meta"]["term"] >= 2
        r = cl.invoke({"f": "read", "key": "k"})
        assert r["type"] == "ok" and r["value"] == 4
        for e in (5, 1000003, 2):
            assert cl.invoke({"f": "add", "key": "s", "value": e})["type"] == "ok"
        assert cl.invoke({"f": "read-set", "key": "s"})["value"] == [2, 5, 1000003]
        assert cl.invoke({"f": "read-set", "key": "other"})["value"] == []
        etcd3.wait(lambda: all(cl.invoke({"f": "read-set", "key": "s", "node": n, "final": True})
                               ["value"] == [2, 5, 1000003] for n in etcd3.names), 10,
                   "every member's own read to show the set")
        for n in etcd3.names:   # routed reads answer from that member
            assert cl.invoke({"f": "read", "key": "k", "node": n})["node"] == n
    finally:
        cl.close()


@etcd_installed
@pytest.mark.integration
def test_outcomes_under_kill_and_pause(etcd3):
    t = EtcdTarget()

    def agreed_leader():
        name = etcd3.leader()
        return name if name and check_status(name, t.status(name, etcd3.endpoints, 2.0))[
            "role"] == "leader" else None
    leader = etcd3.wait(agreed_leader, 30, "a leader that says so itself")
    others = [n for n in etcd3.names if n != leader]
    one = EtcdClient(etcd3.endpoints, timeout=0.5, endpoint_mode="one")
    one.home = others[0]
    try:
        etcd3.pause(others[0])     # sent, never answered: a write is info, a read a fail
        assert one.invoke({"f": "write", "key": "k", "value": 1})["type"] == "info"
        assert one.invoke({"f": "read", "key": "k"})["type"] == "fail"
        etcd3.resume(others[0])
        etcd3.kill(others[0])      # connection refused: never sent, surely did not happen
        got = one.invoke({"f": "write", "key": "k", "value": 2})
        assert got["type"] == "fail" and got["error"].startswith("not sent")
        every = EtcdClient(etcd3.endpoints, timeout=5.0, rng=random.Random(3))
        try:   # "all" moves on to a member it can reach
            assert all(every.invoke({"f": "write", "key": "k", "value": 10 + i})["type"] == "ok"
                       for i in range(6))
        finally:
            every.close()
        with pytest.raises(OSError):
            t.status(others[0], etcd3.endpoints, 1.0)
    finally:
        one.close()
