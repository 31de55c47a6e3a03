"""Evidence rules (chaos.checkers.evidence, docs/verdicts.md): valid only on the evidence needed.

Both ways: each rule turns a history that lacks its evidence into "unknown" with a reason
that names what is missing, and leaves the same history with the evidence valid; an anomaly
found stays an anomaly whatever else is missing.
"""
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings

from chaos.checkers import run_checkers, select_checkers
from chaos.checkers.evidence import CLUSTER_DOWN, CONTROLLER, Thresholds
from chaos.history.model import History
from chaos.history.summary import format_summary
from tests.strategies import (MS, HistoryBuilder, monitor_histories, register_histories,
                              set_histories)

S = 1000 * MS
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def check(h: History, names: list[str] | None = None, **opts: Any) -> dict[str, Any]:
    return run_checkers(h, select_checkers(h, names), opts)


def set_run(final_types: dict[str, str] | None = None, late_ack: bool = True) -> HistoryBuilder:
    """Adds 1, 2 acknowledged; a read at 10 ms; add 2 is acked after it (late_ack: only the
    final reads can vouch for it) or before it (and the read sees it); final reads on n1..n3
    (type per node, default ok)."""
    final_types = final_types or {}
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value=1, node="n1")
    b.op(1, "read-set", 10 * MS, 11 * MS, result=[1] if late_ack else [1, 2], node="n1")
    b.op(0, "add", 20 * MS if late_ack else 2 * MS, 21 * MS if late_ack else 3 * MS, value=2,
         node="n1")
    for i, node in enumerate(("n1", "n2", "n3")):
        typ = final_types.get(node, "ok")
        b.op(10 + i, "read-set", 40 * MS + i * MS, 41 * MS + i * MS, type=typ, node=node,
             invoke_node=node, final=True, result=[1, 2] if typ == "ok" else None)
    return b


# -- final reads ------------------------------------------------------------------------------

def test_final_reads_ok_on_every_node_is_valid():
    out = check(set_run().history())
    assert out["valid"] is True and out["reasons"] == []
    assert out["results"]["lost-writes"].reasons == []


def test_final_reads_failed_on_one_node_make_lost_writes_unknown_naming_it():
    out = check(set_run({"n3": "info"}).history())
    lw = out["results"]["lost-writes"]
    assert lw.valid == "unknown" and out["valid"] == "unknown"
    assert len(lw.reasons) == 1 and "on n3" in lw.reasons[0] and "info" in lw.reasons[0]


def test_all_final_reads_failed_never_fall_back_to_an_older_read():
    """The dead-cluster case: the old read (before add 2 was acked) used to stand in for the
    failed final reads, and the verdict was valid."""
    out = check(set_run({"n1": "info", "n2": "fail", "n3": "info"}).history())
    lw = out["results"]["lost-writes"]
    assert lw.valid == "unknown"
    assert lw.stats["final_reads"] == 0 and lw.stats["final_reads_attempted"] == 3
    assert {n for n in ("n1", "n2", "n3") if any(f"on {n}" in r for r in lw.reasons)} == \
        {"n1", "n2", "n3"}


def test_lost_write_found_on_the_answering_nodes_stays_invalid():
    b = set_run({"n3": "info"})
    ops = b.ops()
    for op in ops:  # the two answering final reads lack element 2: a lost write
        if op.get("final") and op["type"] == "ok":
            op["value"] = [1]
    out = check(History.from_ops(ops))
    lw = out["results"]["lost-writes"]
    assert lw.valid is False and out["valid"] is False
    assert [a.kind for a in lw.anomalies] == ["lost-write"] and lw.reasons  # n3 still named


def test_never_read_acknowledged_add_is_unknown_and_read_one_valid():
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value=1)
    b.op(1, "read-set", 2 * MS, 3 * MS, result=[1])
    assert check(b.history())["valid"] is True
    b.op(0, "add", 4 * MS, 5 * MS, value=2)  # acknowledged after the last read
    out = check(b.history())
    assert out["valid"] == "unknown"
    assert "never read" in out["results"]["lost-writes"].reasons[0]


def test_missing_final_reads_when_the_workload_takes_them():
    ops = [op for op in set_run(late_ack=False).ops() if not op.get("final")]
    h = History.from_ops(ops)
    assert check(h)["valid"] is True  # an imported history without final reads: set-full
    out = check(h, final_reads_expected=True)
    assert out["valid"] == "unknown"
    assert any("final reads" in r for r in out["results"]["lost-writes"].reasons)


# -- too few ok ops ---------------------------------------------------------------------------

def test_all_info_history_is_unknown_with_the_reason_on_the_summary_first_line():
    b = HistoryBuilder()
    for p in range(4):
        b.op(p, "write", p * MS, p * MS + MS, key="k", value=p, type="info")
    b.op(9, "read", 10 * MS, 11 * MS, key="k", type="info")
    h = b.history()
    out = check(h)
    assert out["valid"] == "unknown"
    first = format_summary("h.jsonl", out, h).splitlines()[0]
    assert first.startswith("h.jsonl: UNKNOWN") and "only 0 client operation(s) came back ok" \
        in first


def test_ok_ops_floor_is_configurable():
    b = HistoryBuilder().op(0, "write", 0, MS, key="k", value=1).op(
        1, "read", 2 * MS, 3 * MS, key="k", result=1)
    assert check(b.history())["valid"] is True
    out = check(b.history(), min_ok_ops=3)
    assert out["valid"] == "unknown" and "the floor is 3" in out["reasons"][0]
    assert Thresholds.from_opts({}).min_ok_ops == 1


# -- the cluster stopped answering ------------------------------------------------------------

def monitor_rounds(b: HistoryBuilder, start: int, end: int, answer: bool,
                   nodes: tuple[str, ...] = ("n1", "n2", "n3")) -> None:
    t = start
    while t < end:
        for i, n in enumerate(nodes):
            at = t + i * MS
            if answer:
                b.op("monitor", "status", at, at + MS // 2, invoke_node=n, node=n,
                     result={"role": "leader" if n == "n1" else "follower", "term": 1})
            else:
                b.op("monitor", "status", at, at + MS // 2, invoke_node=n, type="info")
        t += 100 * MS


def load(b: HistoryBuilder, start: int, end: int, ok_until: int) -> None:
    """A write then a read every 50 ms; ok before ok_until, info after."""
    p, t, v = 0, start, 0
    while t < end:
        typ = "ok" if t < ok_until else "info"
        v += 1
        b.op(p, "write", t, t + 5 * MS, key="k", value=v, node="n1", type=typ)
        p += typ == "info"
        b.op(p, "read", t + 10 * MS, t + 15 * MS, key="k", result=v, node="n1", type=typ)
        p += typ == "info"
        t += 50 * MS


def test_monitor_silent_to_the_end_is_unknown_naming_when():
    b = HistoryBuilder()
    monitor_rounds(b, 0, 5 * S, True)
    monitor_rounds(b, 5 * S, 12 * S, False)
    load(b, 0, 12 * S, 12 * S)  # clients still ok: only the monitor rule can catch it
    out = check(b.history())
    assert out["valid"] == "unknown"
    reason = out["reasons"][0]
    assert "no node answered the monitor" in reason and "to the end" in reason
    assert "from 4.8" in reason or "from 4.9" in reason or "from 5.0" in reason


def test_monitor_silent_while_the_nemesis_had_every_node_down_is_a_warning():
    b = HistoryBuilder()
    monitor_rounds(b, 0, 2 * S, True)
    b.op("nemesis", "kill", 2 * S, 2 * S + MS, value={"nodes": ["n1", "n2", "n3"]})
    monitor_rounds(b, 2 * S, 9 * S, False)
    b.op("nemesis", "restart", 9 * S, 9 * S + MS, value=None)
    monitor_rounds(b, 9 * S + 10 * MS, 9 * S + 500 * MS, False)  # restarted, not answering yet
    monitor_rounds(b, 9 * S + 510 * MS, 10 * S, True)
    load(b, 0, 10 * S, 10 * S)
    out = check(b.history())
    assert out["valid"] is True and any("killed, paused or removed" in w
                                      for w in out["warnings"])
    b.op("nemesis", "kill", 11 * S, 11 * S + MS, value={"nodes": ["n1", "n2"]})  # not n3
    monitor_rounds(b, 11 * S, 18 * S, False)
    b.op("nemesis", "restart", 18 * S, 18 * S + MS, value=None)
    monitor_rounds(b, 18 * S + 10 * MS, 19 * S, True)
    load(b, 10 * S, 19 * S, 19 * S)
    out = check(b.history())
    assert out["valid"] == "unknown" and "to 18.0" in out["reasons"][0]  # n3 unexplained


def test_monitor_answers_that_all_come_late_are_a_silence_not_a_crash():
    """A span without any answer in which every poll was answered, only after the span (a
    starved node answering 7 s late): judged as a silence (it used to raise ValueError)."""
    b = HistoryBuilder()
    monitor_rounds(b, 0, 2 * S, True)
    b.op("monitor", "status", 2 * S, 9 * S, invoke_node="n1", node="n1",
         result={"role": "leader", "term": 1, "leader": "n1"})
    monitor_rounds(b, 9 * S + MS, 11 * S, True)
    load(b, 0, 11 * S, 11 * S)
    out = check(b.history())
    assert out["valid"] == "unknown" and "no node answered the monitor" in out["reasons"][0]


def test_short_silence_is_fine():
    b = HistoryBuilder()
    monitor_rounds(b, 0, 3 * S, True)
    monitor_rounds(b, 3 * S, 6 * S, False)  # 3 s < the 5 s default
    monitor_rounds(b, 6 * S, 8 * S, True)
    load(b, 0, 8 * S, 8 * S)
    assert check(b.history())["valid"] is True
    assert check(b.history(), dead_after_s=2.0)["valid"] == "unknown"


def test_every_client_op_of_the_last_seconds_failing_is_unknown():
    b = HistoryBuilder()
    monitor_rounds(b, 0, 12 * S, True)
    load(b, 0, 12 * S, 6 * S)  # ok for 6 s, then 6 s of timeouts
    out = check(b.history())
    assert out["valid"] == "unknown"
    assert "every client operation of the last 5 s" in out["reasons"][0]
    b2 = HistoryBuilder()
    monitor_rounds(b2, 0, 12 * S, True)
    load(b2, 0, 12 * S, 8 * S)  # 4 s of timeouts at the end: under the 5 s window
    assert check(b2.history())["valid"] is True


def test_controller_cluster_down_record_comes_first():
    b = HistoryBuilder()
    monitor_rounds(b, 0, 2 * S, True)
    load(b, 0, 2 * S, 2 * S)
    msg = "every node is down: n1, n2, n3 not running since 1.500 s (not killed by the nemesis)"
    b.op(CONTROLLER, CLUSTER_DOWN, 2 * S, 2 * S, value={"message": msg})
    out = check(b.history())
    assert out["valid"] == "unknown" and out["reasons"][0] == msg
    h = b.history()
    assert msg in format_summary("run", out, h).splitlines()[0]


# -- dual-leaders with terms of any orderable shape -------------------------------------------

def leaders(terms: tuple[Any, Any], meta_terms: tuple[Any, Any] | None = None) -> History:
    """n1 leads in terms[0] from 0; n2 claims terms[1] from 10 ms; both ack a write at once."""
    b = HistoryBuilder()
    for k in range(6):
        b.op("monitor", "status", k * 10 * MS, k * 10 * MS + 1, invoke_node="n1", node="n1",
             result={"role": "leader", "term": terms[0]})
        if k >= 1:
            b.op("monitor", "status", k * 10 * MS + 2, k * 10 * MS + 3, invoke_node="n2",
                 node="n2", result={"role": "leader", "term": terms[1]})
    mt = meta_terms or terms
    b.op(0, "write", 20 * MS, 21 * MS, key="k", value=1, node="n1", meta={"term": mt[0]})
    b.op(1, "write", 22 * MS, 23 * MS, key="k", value=2, node="n2", meta={"term": mt[1]})
    return b.history()


def kinds(out: dict[str, Any]) -> set[str]:
    return {a.kind for a in out["results"]["dual-leaders"].anomalies}


def test_dual_leaders_same_term_for_int_str_and_list_terms():
    for term in (3, "3", [3, 7], ["epoch", 2]):
        out = check(leaders((term, term)))
        assert "same-term-leaders" in kinds(out), term
        assert out["results"]["dual-leaders"].valid is False


def test_dual_leaders_different_terms_of_any_shape_are_a_warning_plus_split_brain():
    for a, b in ((1, 2), ("a", "b"), ([1, 0], [2, 0]), ([1, [2]], [1, [3]])):
        out = check(leaders((a, b)))
        dl = out["results"]["dual-leaders"]
        assert "overlapping-leaders" in kinds(out) and "same-term-leaders" not in kinds(out)
        # both writes carry their claim's term in meta: split brain, even for list terms
        assert "split-brain-writes" in kinds(out), (a, b)
        assert dl.error is None and dl.stats["terms"] == 2


def test_dual_leaders_write_acked_under_another_list_term_is_not_counted():
    out = check(leaders(([1, 0], [2, 0]), meta_terms=([1, 0], [5, 0])))
    assert "split-brain-writes" not in kinds(out)


# -- explanations name the faults between acknowledgement and the read that missed it ---------

def test_lost_write_explanation_names_the_kill_and_restart_in_between():
    b = HistoryBuilder()
    b.op(0, "add", 0, 1 * S, value=1, node="n1")
    b.op("nemesis", "kill", 2 * S, 2 * S + MS, value={"node": "n1"},
         result={"node": "n1", "verified": True})
    b.op("nemesis", "restart", 4 * S, 4 * S + MS, value=None)
    b.op(5, "read-set", 6 * S, 6 * S + MS, result=[], final=True, node="n1")
    out = check(b.history())
    (a,) = out["results"]["lost-writes"].anomalies
    assert "between known at 1.000 s and the read at 6.000 s that missed it" in a.explanation
    assert "kill n1 at 2.000 s, restarted at 4.001 s" in a.explanation
    assert "no fault active or just ended" in a.explanation  # nothing active at the ack itself


# -- generated histories, both ways -----------------------------------------------------------

def mutate(ops: list[dict[str, Any]], how: str) -> History:
    out = []
    for op in ops:
        op = dict(op)
        client = isinstance(op["process"], int)
        if how == "delete-finals" and op.get("final"):
            continue
        if how == "fail-finals" and op.get("final") and op["type"] != "invoke":
            op["type"], op["value"] = "fail", None
        if how == "all-info" and client and op["type"] != "invoke":
            op["type"] = "info"
            op.pop("value", None)
        out.append(op)
    return History.from_ops(out)


def _ack_after_last_plain_read(ops: list[dict[str, Any]]) -> bool:
    """Some ok add completes at or after the last ok non-final read-set's invoke (or there is
    no such read): without the final reads, nothing vouches for that add."""
    h = History.from_ops(ops)
    p = h.pairs
    reads = p[(p["f"] == "read-set") & (p["type"] == "ok") & ~p["final"]]
    acks = p[(p["f"] == "add") & (p["type"] == "ok")]["complete_time"]
    return reads.empty or bool((acks >= reads["invoke_time"].max()).any())


def _has_ok(ops: list[dict[str, Any]], f: str) -> bool:
    return any(o["type"] == "ok" and o["f"] == f and isinstance(o["process"], int) for o in ops)


@SETTINGS
@given(set_histories(final_reads=3))
def test_generated_valid_set_histories_lose_valid_without_their_final_reads(gen):
    assume(_has_ok(gen.ops, "add"))
    assert check(gen.history())["valid"] is True  # unchanged: valid
    assert check(mutate(gen.ops, "fail-finals"))["valid"] == "unknown"
    assert check(mutate(gen.ops, "all-info"))["valid"] == "unknown"
    deleted = mutate(gen.ops, "delete-finals")
    assert check(deleted, final_reads_expected=True)["valid"] == "unknown"
    if _ack_after_last_plain_read(gen.ops):
        assert check(deleted)["valid"] == "unknown"


@SETTINGS
@given(register_histories())
def test_generated_valid_register_histories_all_info_is_unknown(gen):
    assume(_has_ok(gen.ops, "read"))
    assert check(gen.history())["valid"] is True
    out = check(mutate(gen.ops, "all-info"))
    assert out["valid"] == "unknown" and out["reasons"]


@SETTINGS
@given(monitor_histories())
def test_generated_valid_monitor_histories_all_info_clients_is_unknown(gen):
    assume(_has_ok(gen.ops, "write"))
    assume(any(o["process"] == "monitor" and o["type"] == "ok" for o in gen.ops))
    # writes without reads: stale-reads would have nothing to judge; these histories are
    # made for dual-leaders
    assert check(gen.history(), ["dual-leaders"])["valid"] is True
    assert check(mutate(gen.ops, "all-info"), ["dual-leaders"])["valid"] == "unknown"


@SETTINGS
@given(set_histories(inject="lost-write", final_reads=3))
def test_generated_invalid_set_histories_stay_invalid(gen):
    assert check(gen.history())["valid"] is False


@SETTINGS
@given(register_histories(inject="stale-read"))
def test_generated_invalid_register_histories_stay_invalid(gen):
    assert check(gen.history())["valid"] is False


@SETTINGS
@given(monitor_histories(inject="same-term-leaders"))
def test_generated_invalid_monitor_histories_stay_invalid(gen):
    assert check(gen.history(), ["dual-leaders"])["valid"] is False


# -- the reasons reach every view -------------------------------------------------------------

def test_reasons_reach_the_document_junit_and_report(tmp_path):
    from chaos.report import render
    from chaos.report.junit import junit_tree
    from chaos.report.results import SCHEMA, normalize_results, results_document

    h = set_run({"n3": "info"}).history()
    doc = results_document(check(h), history=h, path="h.jsonl", fmt="jsonl")
    assert doc["schema"] == SCHEMA and doc["valid"] == "unknown" and doc["exit_code"] == 2
    assert "on n3" in doc["results"]["lost-writes"]["reasons"][0]
    assert normalize_results(doc)["results"]["lost-writes"]["reasons"] == \
        doc["results"]["lost-writes"]["reasons"]
    xml = junit_tree(doc, suite_name="t").getroot()
    err = xml.find("testsuite/testcase[@name='lost-writes']/error")
    assert err is not None and "on n3" in err.get("message")
    run = xml.find("testsuite/testcase[@name='run']/error")  # the run's verdict, too
    assert run is not None and "on n3" in run.get("message")
    html = render(h, doc, tmp_path / "r.html").read_text()
    assert "unknown because: final reads" in html and "on n3" in html


def test_interrupted_and_unverified_runs_are_unknown_with_reasons():
    from chaos.report.results import results_document

    doc = results_document(None, run_dir="d", interrupted=True, unverified=["link n1->n2"])
    assert doc["valid"] == "unknown" and doc["exit_code"] == 2 and doc["results"] == {}
    assert doc["reasons"][0].startswith("the run was interrupted")
    assert "fault not verified: link n1->n2" in doc["reasons"]
    h = set_run().history()
    ok = results_document(check(h), history=h)
    assert ok["valid"] is True and ok["exit_code"] == 0 and ok["reasons"] == []
    bad = results_document(check(h), history=h, unverified=["pause n2 not seen"])
    assert bad["valid"] == "unknown" and bad["exit_code"] == 2
