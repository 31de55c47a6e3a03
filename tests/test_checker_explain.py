"""Explanations: faults active or just ended, leaders per partition side, where acked."""
from __future__ import annotations

import time

from chaos.checkers.base import Anomaly
from chaos.checkers.explain import explain
from tests.strategies import MS, HistoryBuilder

S = 1000 * MS


def scenario() -> HistoryBuilder:
    """n1 leads term 1; a partition isolates n1 at 1 s; n2 leads term 2 from 2 s; heal at 4 s;
    n1 hears of term 2 at 6 s; the last observation is at 7 s."""
    b = HistoryBuilder()
    part = {"partition": [["n1"], ["n2", "n3"]]}
    b.op("nemesis", "start-partition", 1 * S, 1 * S + MS, value=part)
    b.op("nemesis", "stop-partition", 4 * S, 4 * S + MS, value=None)
    b.op("monitor", "status", 0, MS, invoke_node="n1", node="n1",
         result={"role": "leader", "term": 1})
    b.op("monitor", "status", 2 * S, 2 * S + MS, invoke_node="n2", node="n2",
         result={"role": "leader", "term": 2})
    b.op("monitor", "status", 6 * S, 6 * S + MS, invoke_node="n1", node="n1",
         result={"role": "follower", "term": 2})
    b.op("monitor", "status", 7 * S, 7 * S + MS, invoke_node="n3", node="n3",
         result={"role": "follower", "term": 2})
    return b


def test_active_partition_and_leaders_on_each_side():
    a = Anomaly("lost-write", "x", time=3 * S,
                details={"acked_by": "n1", "ack_term": 1})
    explain(scenario().history(), [a])
    e = a.explanation
    assert e.startswith("at 3.000 s")
    assert "partition n1 | n2,n3 active since 1.000 s" in e
    assert "side n1: leader n1 (term 1)" in e and "side n2,n3: leader n2 (term 2)" in e
    assert "acknowledged by n1 in term 1" in e


def test_fault_that_just_ended_is_named_and_an_old_one_is_not():
    h = scenario().history()
    soon = Anomaly("stale-read", "x", time=4 * S + 501 * MS)
    late = Anomaly("stale-read", "x", time=7 * S)
    explain(h, [soon, late])
    assert "partition n1 | n2,n3 ended 500 ms before" in soon.explanation
    assert "no fault active or just ended" in late.explanation
    assert "leader n2 (term 2)" in late.explanation


def test_no_leader_and_no_monitor():
    b = HistoryBuilder().op(0, "write", 0, MS, key="k", value=1)
    a = Anomaly("stale-read", "x", time=MS)
    explain(b.history(), [a])
    assert a.explanation == "at 0.001 s: no fault active or just ended"
    after = Anomaly("stale-read", "x", time=8 * S)  # after the last observation
    explain(scenario().history(), [after])
    assert "no node claimed leadership then" in after.explanation


def test_leaders_listed_together_when_no_partition_is_on():
    a = Anomaly("stale-read", "x", time=5 * S + S // 2)  # n1 still thinks it leads until 6 s
    explain(scenario().history(), [a])
    assert "leader n1 (term 1), n2 (term 2)" in a.explanation
    assert "ended 1499 ms before" in a.explanation  # the heal op completed at 4.001 s


def test_anomaly_without_time_gets_the_ack_only():
    a = Anomaly("lost-write", "x", details={"acked_by": "n2"})
    explain(scenario().history(), [a])
    assert a.explanation == "acknowledged by n2"


def test_many_anomalies_are_explained_quickly():
    h = scenario().history()
    anomalies = [Anomaly("stale-read", "x", time=i * MS) for i in range(20000)]
    t0 = time.perf_counter()
    explain(h, anomalies)
    assert time.perf_counter() - t0 < 5.0
    assert all(a.explanation for a in anomalies)


def test_faults_described_from_what_the_nemesis_recorded():
    """The nemesis puts what it did in the completion value (chaos.nemesis._op)."""
    b = HistoryBuilder()
    b.op("nemesis", "start-partition", 0, MS, value={"shape": "isolate-leader"},
         result={"shape": "isolate-leader", "partition": [["n2"], ["n1", "n3"]],
                 "did": ["..."], "verified": True})
    b.op("nemesis", "kill", 2 * MS, 3 * MS, value={"node": "leader"},
         result={"node": "n2", "chosen": "leader", "verified": True})
    b.op("nemesis", "start-latency", 4 * MS, 5 * MS, value={"ms": 200, "jitter_ms": 50},
         result={"ms": 200, "jitter_ms": 50, "did": [], "verified": True})
    b.op("nemesis", "pause", 6 * MS, 7 * MS, value=["n3"])
    a = Anomaly("stale-read", "x", time=6 * MS + MS // 2)  # the history ends at 7 ms
    explain(b.history(), [a])
    e = a.explanation
    assert "partition n2 | n1,n3 active" in e and "kill n2 active" in e
    assert "latency 200±50 ms active" in e and "pause n3 active" in e
    assert "did" not in e and "verified" not in e


def test_just_after_the_monitors_last_status_its_leader_is_named():
    """Finding 21: a final read 19 ms after the monitor stopped is not "nobody led"."""
    soon = Anomaly("divergent", "x", time=7 * S + MS + 19 * MS)
    explain(scenario().history(), [soon])
    assert "the monitor's last status, 19 ms before (7.001 s), had leader n2 (term 2)" \
        in soon.explanation
    assert "no node claimed leadership" not in soon.explanation
