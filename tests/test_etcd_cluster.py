"""targets.etcd.cluster against real etcd members (Debian's etcd-server) on 127.0.0.1."""
from __future__ import annotations

import shutil

import pytest

from chaos.target import MAIN, Addr, NodeConfig
from targets.etcd.cluster import check_timing, etcd_service, initial_cluster
from targets.etcd.gateway import b64, call_once, unb64

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd not installed (apt-get install etcd-server)")


def _cfg(name: str = "n1") -> NodeConfig:
    addrs = {n: {MAIN: Addr(f"10.0.0.{i}", 2379), "peer": Addr(f"10.0.0.{i}", 2380)}
             for i, n in enumerate(("n1", "n2", "n3"), 1)}
    return NodeConfig(name=name, listen=Addr("0.0.0.0", 2379), advertise=addrs[name][MAIN],
                      peers={n: a[MAIN] for n, a in addrs.items() if n != name},
                      data_dir="/data", ports={MAIN: 2379, "peer": 2380},
                      peer_ports={n: a for n, a in addrs.items() if n != name},
                      advertise_ports=addrs[name], nodes=("n1", "n2", "n3"))


def test_argv_uses_advertised_and_peer_addresses():
    svc = etcd_service(_cfg("n2"), election_timeout_ms=500, heartbeat_ms=50)
    a = svc.argv
    flag = lambda f: a[a.index(f) + 1]
    assert flag("--name") == "n2" and flag("--data-dir") == "/data/etcd"
    assert flag("--listen-client-urls") == "http://0.0.0.0:2379"
    assert flag("--advertise-client-urls") == "http://10.0.0.2:2379"
    assert flag("--listen-peer-urls") == "http://0.0.0.0:2380"
    assert flag("--initial-advertise-peer-urls") == "http://10.0.0.2:2380"
    assert flag("--initial-cluster") == ("n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,"
                                         "n3=http://10.0.0.3:2380")
    assert flag("--election-timeout") == "500" and flag("--heartbeat-interval") == "50"
    # every member computes the same --initial-cluster
    assert {initial_cluster(_cfg(n)) for n in ("n1", "n2", "n3")} == {flag("--initial-cluster")}


@pytest.mark.parametrize("election,heartbeat,ok", [(1000, 100, True), (500, 100, True),
                                                   (499, 100, False), (100, 0, False),
                                                   (50000, 100, True), (50001, 100, False)])
def test_timing_rule_mirrors_etcd(election, heartbeat, ok):
    assert (check_timing(election, heartbeat) is None) == ok
    if not ok:
        with pytest.raises(ValueError):
            etcd_service(_cfg(), election_timeout_ms=election, heartbeat_ms=heartbeat)


@pytest.mark.integration
def test_three_members_elect_survive_leader_kill_and_rejoin(tmp_path):
    from targets.etcd.testing import LocalEtcd

    c = LocalEtcd(tmp_path, 3, election_timeout_ms=500, heartbeat_ms=50).start_all()
    try:
        first = c.wait(c.leader, 60, "a leader all members agree on")
        st = c.status(first)
        assert st["role"] == "leader" and st["member"] == first and st["term"] >= 2
        assert all(c.status(n)["role"] == "follower" for n in c.names if n != first)
        put = call_once(c.endpoints[first], "/v3/kv/put", {"key": b64("k"), "value": b64("1")},
                        5.0)
        assert "header" in put
        c.kill(first)
        rest = [n for n in c.names if n != first]

        def new_leader():
            # every "leader" answer is in a later term than the killed leader's, from the
            # very first one (etcd's maintenance status lags: its term is the applied one)
            for n in rest:
                now = c.status(n)
                assert now["role"] != "leader" or now["term"] > st["term"], now
            return c.leader(rest) not in (None, first) and c.leader(rest)
        second = c.wait(new_leader, 30, "a new leader")
        assert c.status(second)["term"] > st["term"]
        call_once(c.endpoints[second], "/v3/kv/put", {"key": b64("k"), "value": b64("2")}, 5.0)
        c.start(first, restart=True)   # same data dir: rejoins as a follower, catches up
        c.wait(lambda: c.status(first)["leader"] == second, 30, "the restarted member to rejoin")

        def caught_up():
            r = call_once(c.endpoints[first], "/v3/kv/range",
                          {"key": b64("k"), "serializable": True}, 2.0)
            return [unb64(kv.get("value")) for kv in r.get("kvs", [])] == ["2"]
        c.wait(caught_up, 30, "the restarted member to apply the write made while it was down")
        assert c.status(first)["role"] == "follower"
    finally:
        c.close()


@pytest.mark.integration
def test_dual_leaders_judges_real_etcd_statuses(tmp_path):
    """Statuses taken from real members before and after a leader change, replayed as the
    monitor would record an old leader that has not yet heard of the new one (a partition):
    leadership in different terms overlapping is a warning with its length; the same term
    (doctored) is an anomaly. The checker must take etcd's status shape as it is."""
    from chaos.checkers.dual_leaders import DUAL_LEADERS
    from chaos.target import check_status
    from targets.etcd.testing import LocalEtcd
    from tests.strategies import MS, HistoryBuilder

    c = LocalEtcd(tmp_path, 3, election_timeout_ms=500, heartbeat_ms=50).start_all()
    try:
        first = c.wait(c.leader, 60, "a leader")
        old = check_status(first, c.status(first))
        c.kill(first)
        rest = [n for n in c.names if n != first]
        second = c.wait(lambda: c.leader(rest) not in (None, first) and c.leader(rest), 30,
                        "a new leader")
        new = check_status(second, c.status(second))
    finally:
        c.close()
    assert old["term"] < new["term"] and old["role"] == new["role"] == "leader"

    def history(new_status):
        b = HistoryBuilder()
        for t_ms, node, st in ((0, first, old), (100, second, new_status), (400, first, old),
                               (700, first, None), (800, second, new_status)):
            if st is None:
                b.op("monitor", "status", t_ms * MS, t_ms * MS + MS, type="info",
                     invoke_node=node)
            else:
                b.op("monitor", "status", t_ms * MS, t_ms * MS + MS, invoke_node=node,
                     node=node, result=st)
        return b.history()

    r = DUAL_LEADERS.check(history(new))
    assert r.valid is True
    warn = [a for a in r.anomalies if a.kind == "overlapping-leaders"]
    assert len(warn) == 1 and warn[0].severity == "warning"
    assert warn[0].details["length_ns"] == 600 * MS - MS   # 100 ms + 1 ms .. 700 ms
    same = DUAL_LEADERS.check(history({**new, "term": old["term"]}))
    assert same.valid is False and "same-term-leaders" in [a.kind for a in same.anomalies]
