"""Perf checker: fault windows, availability inside/outside them, latency quantiles."""
from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers.perf import PERF, client_mask, fault_windows, in_windows
from tests.strategies import MS, HistoryBuilder


def nem(b: HistoryBuilder, t_ms: int, f: str, value=None, type: str = "ok") -> HistoryBuilder:
    return b.op("nemesis", f, t_ms * MS, (t_ms + 1) * MS, value=value, type=type)


def test_windows_open_on_start_and_close_on_matching_stop():
    b = HistoryBuilder()
    nem(b, 0, "start-partition", {"partition": [["n1"], ["n2", "n3"]]})
    nem(b, 5, "kill", ["n2"])
    nem(b, 10, "stop-partition")
    nem(b, 12, "restart", ["n2"])
    nem(b, 20, "pause", ["n3"])
    nem(b, 30, "heal")
    w = fault_windows(b.history())
    assert [(x.kind, x.start, x.end, x.closed) for x in w] == [
        ("partition", 0, 11 * MS, True), ("kill", 5 * MS, 13 * MS, True),
        ("pause", 20 * MS, 31 * MS, True)]
    assert w[0].value == {"partition": [["n1"], ["n2", "n3"]]}
    assert len(w[0].ops) == 4  # opening and closing op lines


def test_failed_start_opens_nothing_and_unclosed_window_ends_with_the_history():
    b = HistoryBuilder()
    nem(b, 0, "start-latency", type="fail")
    nem(b, 2, "start-latency", {"ms": 100})
    b.op(1, "read", 40 * MS, 41 * MS, key="k", result=None)
    w = fault_windows(b.history())
    assert [(x.kind, x.start, x.end, x.closed) for x in w] == [("latency", 2 * MS, 41 * MS, False)]


def test_failed_stop_leaves_the_window_open():
    b = HistoryBuilder()
    nem(b, 0, "start-partition")
    nem(b, 2, "stop-partition", type="fail")
    nem(b, 4, "stop-partition")
    assert [(x.start, x.end) for x in fault_windows(b.history())] == [(0, 5 * MS)]


def test_in_windows_merges_overlaps():
    b = HistoryBuilder()
    nem(b, 0, "start-partition")
    nem(b, 1, "kill")
    nem(b, 3, "stop-partition")
    nem(b, 8, "restart")
    w = fault_windows(b.history())
    times = np.array([-1, 0, 5 * MS, 9 * MS, 9 * MS + 1], dtype=np.int64)
    assert in_windows(times, w).tolist() == [False, True, True, True, False]


def test_availability_and_latency_inside_and_outside_faults():
    b = HistoryBuilder()
    for i in range(10):  # before the fault: all ok, 1 ms each
        b.op(0, "write", i * 2 * MS, i * 2 * MS + MS, key="k", value=i)
    nem(b, 20, "start-partition")
    for i in range(4):  # during: half fail
        t = (22 + i * 2) * MS
        b.op(0, "write", t, t + MS, key="k", value=100 + i, type="ok" if i % 2 else "fail")
    nem(b, 30, "stop-partition")
    b.op(0, "read", 40 * MS, 45 * MS, key="k", result=103)
    r = PERF.check(b.history())
    assert r.valid is True
    av = r.stats["availability"]
    assert av["in_faults"] == {"ops": 4, "ok": 2, "ok_ratio": 0.5}
    assert av["outside_faults"] == {"ops": 11, "ok": 11, "ok_ratio": 1.0}
    assert r.stats["ops"] == 15 and r.stats["fail"] == 2
    assert r.stats["latency_ms"]["write"]["p50"] == 1.0
    assert r.stats["latency_ms"]["read"]["max"] == 5.0
    assert r.stats["latency_ms"]["all"]["count"] == 15
    assert r.stats["fault_windows"][0]["kind"] == "partition"


def test_info_ops_have_no_latency_but_count_against_availability():
    b = HistoryBuilder()
    b.op(0, "write", 0, MS, key="k", value=1)
    b.op(1, "write", 0, 500 * MS, key="k", value=2, type="info")
    b.op(2, "write", 0, None, key="k", value=3)  # never completed
    r = PERF.check(b.history())
    assert r.stats["latency_ms"]["all"]["count"] == 1
    assert r.stats["availability"]["overall"]["ok_ratio"] == round(1 / 3, 6)


def test_no_client_ops_is_unknown_not_valid():
    b = nem(HistoryBuilder(), 0, "start-partition")
    assert not PERF.applies(b.history())
    r = PERF.check(b.history())
    assert r.valid == "unknown" and r.warnings


def test_client_mask_tells_processes_apart():
    b = HistoryBuilder()
    b.op(3, "read", 0, MS, key="k", result=None)
    nem(b, 2, "kill")
    b.op("monitor", "status", 4 * MS, 5 * MS, invoke_node="n1", node="n1",
         result={"role": "leader"})
    assert client_mask(b.history().pairs).tolist() == [True, False, False]


# -- throughput needs a real duration (issue 9: a 1-op history reported 1e9 ops/s) -----------

def test_one_op_history_reports_no_throughput():
    b = HistoryBuilder()
    b.op(1, "read", 5 * MS, 5 * MS + 200, key="k", result=None)  # 200 ns long
    stats = PERF.check(b.history()).stats
    assert stats["ops"] == 1
    assert stats["throughput_per_s"] is None and stats["ok_throughput_per_s"] is None
    assert "throughput" in stats["throughput_note"]


def test_ops_within_a_microsecond_report_no_throughput():
    b = HistoryBuilder()
    for p in range(3):
        b.op(p, "read", 0, 500, key="k", result=None)  # all inside 0.5 µs
    stats = PERF.check(b.history()).stats
    assert stats["throughput_per_s"] is None


def test_throughput_over_a_real_duration():
    b = HistoryBuilder()
    b.op(1, "read", 0, 1 * MS, key="k", result=None)
    b.op(2, "read", 999 * MS, 1000 * MS, key="k", result=None)
    stats = PERF.check(b.history()).stats
    assert stats["throughput_per_s"] == 2.0 and stats["duration_s"] == 1.0
    assert "throughput_note" not in stats


def test_client_mask_is_the_history_rule_a_numeric_string_is_no_client():
    """One rule (chaos.history.model.client_mask): only integer processes are clients."""
    b = HistoryBuilder()
    b.op(3, "read", 0, MS, key="k", result=None)
    b.op("3", "read", 2 * MS, 3 * MS, key="k", result=None)
    b.op("controller", "cluster-down", 4 * MS, 4 * MS, value={"message": "x"})
    h = b.history()
    assert client_mask(h.pairs).tolist() == [True, False, False]
    assert len(h.client()) == 1 and PERF.check(h).stats["ops"] == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["read", "write"]),
                          st.lists(st.integers(0, 10**9), max_size=30)), min_size=1, max_size=6))
def test_merged_latency_quantiles_are_numpys_and_leave_the_parts(parts: list[Any]) -> None:
    """The quantiles of merged parts (each concatenation partitioned in place) are
    np.percentile's of all the latencies, per f and together, and the parts are left as
    they were: the stats come out the same twice."""
    from chaos.checkers.perf import QUANTILES, PerfParts
    merged = PerfParts()
    for n, (f, lats) in enumerate(parts):
        one = PerfParts(ops=max(1, len(lats)), first=0, last=10**9)
        one.latency[f] = (n, [np.array(lats, dtype=np.int64)])
        merged.merge(one)
    every = [x for _, lats in parts for x in lats]
    first = merged.stats([])
    assert merged.stats([]) == first
    for name, xs in [("all", every)] + [(f, [x for g, ls in parts if g == f for x in ls])
                                         for f in {f for f, _ in parts}]:
        got = first["latency_ms"][name]
        assert got["count"] == len(xs)
        if xs:
            want = np.percentile(np.array(xs, dtype=np.int64), list(QUANTILES.values()))
            assert [got[q] for q in QUANTILES] == [round(float(v) / 1e6, 3) for v in want]
            assert got["max"] == round(max(xs) / 1e6, 3)
