"""Dual-leaders checker: leadership intervals, the three findings, generated histories."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from chaos.checkers.dual_leaders import DUAL_LEADERS, leader_intervals, leaders_at
from tests.strategies import MS, HistoryBuilder, monitor_histories

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def mon(b: HistoryBuilder, t_ms: float, node: str, role: str | None, term: int | None = None,
        ) -> HistoryBuilder:
    """One monitor observation answered at t+0.5 ms; role None means no answer (info)."""
    t = int(t_ms * MS)
    if role is None:
        return b.op("monitor", "status", t, t + MS // 2, type="info", invoke_node=node)
    return b.op("monitor", "status", t, t + MS // 2, invoke_node=node, node=node,
                result={"role": role, "term": term, "leader": node if role == "leader" else None})


def write(b: HistoryBuilder, p: int, t_ms: float, node: str, term: int | None = None,
          value: object = None) -> HistoryBuilder:
    t = int(t_ms * MS)
    return b.op(p, "write", t, t + MS, key="k", value=value if value is not None else t,
                node=node, meta={"term": term} if term is not None else None)


def kinds(r) -> list[str]:
    return [a.kind for a in r.anomalies]


def test_one_leader_per_term_handing_over_is_valid():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    mon(b, 1, "n2", "follower", 1)
    mon(b, 2, "n1", "follower", 2)
    mon(b, 3, "n2", "leader", 2)
    r = DUAL_LEADERS.check(b.history())
    assert r.valid is True and r.anomalies == []
    assert r.stats["leader_intervals"] == 2 and r.stats["terms"] == 2


def test_interval_runs_from_the_answer_to_the_next_contrary_observation():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    mon(b, 2, "n1", "leader", 1)
    mon(b, 4, "n1", "follower", 2)
    ivs = leader_intervals(b.history())
    assert [(iv.node, iv.term, iv.start, iv.end) for iv in ivs] == [
        ("n1", 1, MS // 2, 4 * MS)]
    assert leaders_at(ivs, 3 * MS) == ivs and leaders_at(ivs, 5 * MS) == []


def test_no_answer_ends_leadership_and_last_interval_ends_at_the_last_observation():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    mon(b, 2, "n1", None)                 # killed or paused: not acting as leader
    mon(b, 4, "n2", "leader", 2)
    mon(b, 6, "n3", "follower", 2)
    ivs = leader_intervals(b.history())
    assert [(iv.node, iv.start, iv.end) for iv in ivs] == [
        ("n1", MS // 2, 2 * MS), ("n2", 4 * MS + MS // 2, 6 * MS + MS // 2)]


def test_two_leaders_in_one_term_is_an_anomaly_even_at_different_times():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 3)
    mon(b, 1, "n1", "follower", 3)
    mon(b, 2, "n2", "leader", 3)
    r = DUAL_LEADERS.check(b.history())
    assert r.valid is False and kinds(r) == ["same-term-leaders"]
    a = r.anomalies[0]
    assert a.details["term"] == 3 and sorted(a.details["nodes"]) == ["n1", "n2"]
    assert a.details["overlap_ns"] == 0 and "term 3" in a.message


def test_two_leaders_without_terms_at_once_is_an_anomaly():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader")
    mon(b, 1, "n2", "leader")
    mon(b, 2, "n1", "leader")
    mon(b, 3, "n2", "follower")
    r = DUAL_LEADERS.check(b.history())
    assert kinds(r) == ["same-term-leaders"] and r.valid is False
    assert r.anomalies[0].details["length_ns"] == 3 * MS - (1 * MS + MS // 2)


def test_leaders_without_terms_one_after_the_other_are_fine():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader")
    mon(b, 1, "n1", "follower")
    mon(b, 2, "n2", "leader")
    assert DUAL_LEADERS.check(b.history()).valid is True


def test_overlap_in_different_terms_is_a_warning_with_its_length():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    mon(b, 10, "n2", "leader", 2)
    mon(b, 20, "n1", "follower", 2)       # n1 learns of term 2 only now
    r = DUAL_LEADERS.check(b.history())
    assert r.valid is True and kinds(r) == ["overlapping-leaders"]
    a = r.anomalies[0]
    assert a.severity == "warning" and a.details["length_ns"] == 20 * MS - (10 * MS + MS // 2)
    assert r.stats["overlapping_leaders"] == 1


def test_writes_acked_by_both_overlapping_leaders_are_split_brain():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    mon(b, 10, "n2", "leader", 2)
    write(b, 1, 12, "n1", term=1)
    write(b, 2, 13, "n2", term=2)
    write(b, 2, 15, "n2", term=2)
    mon(b, 20, "n1", "follower", 2)
    r = DUAL_LEADERS.check(b.history())
    assert r.valid is False
    assert sorted(kinds(r)) == ["overlapping-leaders", "split-brain-writes"]
    a = next(a for a in r.anomalies if a.kind == "split-brain-writes")
    assert a.details["writes"] == {"n1": 1, "n2": 2}
    assert a.details["ack_terms"] == {"n1": [1], "n2": [2]}
    assert r.stats["split_brain_windows"] == 1


def test_writes_only_by_one_side_or_straddling_the_window_are_not_split_brain():
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    write(b, 1, 9.8, "n1", term=1)        # [9.8, 10.8] ms: may have been acked before 10.5
    mon(b, 10, "n2", "leader", 2)
    write(b, 2, 13, "n2", term=2)
    mon(b, 20, "n1", "follower", 2)
    r = DUAL_LEADERS.check(b.history())
    assert r.valid is True and kinds(r) == ["overlapping-leaders"]


def test_write_acked_in_a_later_term_does_not_count_for_a_stale_claim():
    """n1 led term 1, n2 term 2, then n1 term 3 before the monitor saw it: n1's write marked
    term 3 belongs to that (unseen) claim, not to its stale term-1 claim."""
    b = HistoryBuilder()
    mon(b, 0, "n1", "leader", 1)
    mon(b, 10, "n2", "leader", 2)
    write(b, 2, 12, "n2", term=2)
    mon(b, 14, "n1", "leader", 1)         # n1 still on term 1
    write(b, 1, 16, "n1", term=3)         # n1 won term 3 meanwhile
    mon(b, 20, "n1", "leader", 3)
    mon(b, 22, "n2", "follower", 3)
    r = DUAL_LEADERS.check(b.history())
    assert r.valid is True and "split-brain-writes" not in kinds(r)
    b2 = HistoryBuilder()  # the same with the write marked term 1: n1 acked under the old claim
    mon(b2, 0, "n1", "leader", 1)
    mon(b2, 10, "n2", "leader", 2)
    write(b2, 2, 12, "n2", term=2)
    write(b2, 1, 16, "n1", term=1)
    mon(b2, 20, "n1", "follower", 2)
    assert "split-brain-writes" in kinds(DUAL_LEADERS.check(b2.history()))


def test_applies_only_with_monitor_observations():
    b = HistoryBuilder()
    write(b, 1, 0, "n1")
    assert not DUAL_LEADERS.applies(b.history())
    assert DUAL_LEADERS.applies(mon(b, 5, "n1", "leader", 1).history())


@SETTINGS
@given(monitor_histories())
def test_generated_one_leader_per_term_histories_are_valid(gen):
    r = DUAL_LEADERS.check(gen.history())
    assert r.valid is True, [a.message for a in r.anomalies]
    assert not any(a.kind == "same-term-leaders" for a in r.anomalies)


@SETTINGS
@given(monitor_histories(inject="same-term-leaders"))
def test_a_second_leader_in_a_term_is_found(gen):
    r = DUAL_LEADERS.check(gen.history())
    assert r.valid is False
    hits = [a for a in r.anomalies if a.kind == "same-term-leaders"]
    assert hits and any(a.details.get("term") == gen.where["term"] for a in hits)
    assert any(gen.where["node"] in a.details["nodes"] for a in hits)
