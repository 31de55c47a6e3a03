"""Stale-reads checker: hand-built histories both ways, generated ones, and a naive oracle."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.checkers.stale_reads import STALE_READS
from chaos.history.model import OPEN, History
from tests.strategies import MS, HistoryBuilder, register_histories

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check(b: HistoryBuilder):
    return STALE_READS.check(b.history())


def two_writes() -> HistoryBuilder:
    """write 1 [0,1ms], write 2 [2,3ms] on k: 2 surely replaced 1 from 3 ms on."""
    b = HistoryBuilder()
    b.op(0, "write", 0, 1 * MS, value=1, key="k", node="n1")
    b.op(0, "write", 2 * MS, 3 * MS, value=2, key="k", node="n1")
    return b


def test_reading_the_latest_value_is_valid():
    b = two_writes().op(1, "read", 5 * MS, 6 * MS, key="k", result=2, node="n2")
    r = check(b)
    assert r.valid is True and r.stats["stale"] == 0 and r.stats["reads"] == 1


def test_reading_an_overwritten_value_is_stale_with_its_lag():
    b = two_writes().op(1, "read", 10 * MS, 11 * MS, key="k", result=1, node="n2")
    r = check(b)
    assert r.valid is False and [a.kind for a in r.anomalies] == ["stale-read"]
    a = r.anomalies[0]
    assert a.details["lag_ns"] == 7 * MS  # read invoked at 10 ms, write 2 completed at 3 ms
    assert a.details["value"] == 1 and a.details["overwritten_by"] == 2
    assert a.details["read_node"] == "n2" and a.key == "k" and a.time == 10 * MS
    assert len(a.ops) == 6  # the read, the write read, the overwrite: invoke + completion each
    assert "n2" in a.message and "7.0 ms" in a.message


def test_lag_uses_the_earliest_overwrite():
    b = two_writes()
    b.op(0, "write", 4 * MS, 8 * MS, value=3, key="k")
    b.op(1, "read", 10 * MS, 11 * MS, key="k", result=1)
    a = check(b).anomalies[0]
    assert a.details["lag_ns"] == 7 * MS and a.details["overwritten_by"] == 2


def test_read_concurrent_with_the_overwrite_is_not_stale():
    b = two_writes().op(1, "read", 2500_000, 6 * MS, key="k", result=1)
    assert check(b).valid is True


def test_overlapping_writes_do_not_surely_order():
    b = HistoryBuilder()
    b.op(0, "write", 0, 5 * MS, value=1, key="k")
    b.op(1, "write", 1 * MS, 3 * MS, value=2, key="k")  # invoked before write 1 completed
    b.op(2, "read", 10 * MS, 11 * MS, key="k", result=1)
    assert check(b).valid is True


def test_initial_value_after_a_completed_write_is_stale():
    b = two_writes().op(1, "read", 4 * MS, 5 * MS, key="k", result=None)
    r = check(b)
    assert [a.kind for a in r.anomalies] == ["stale-read"]
    assert r.anomalies[0].details["lag_ns"] == 3 * MS  # since write 1 completed
    assert "initial value" in r.anomalies[0].message


def test_initial_value_before_any_write_completed_is_fine():
    b = HistoryBuilder()
    b.op(0, "write", 0, 5 * MS, value=1, key="k")
    b.op(1, "read", 1 * MS, 2 * MS, key="k", result=None)
    assert check(b).valid is True


def test_info_write_value_is_never_stale_by_itself():
    b = HistoryBuilder()
    b.op(0, "write", 0, 1 * MS, value=1, key="k", type="info")
    b.op(1, "write", 2 * MS, 3 * MS, value=2, key="k")
    b.op(2, "read", 10 * MS, 11 * MS, key="k", result=1)  # the info write landed late
    assert check(b).valid is True


def test_successful_cas_is_a_write_and_failed_one_is_not():
    b = HistoryBuilder()
    b.op(0, "write", 0, 1 * MS, value=1, key="k")
    b.op(0, "cas", 2 * MS, 3 * MS, value=[1, 2], key="k")
    b.op(1, "read", 5 * MS, 6 * MS, key="k", result=1)
    assert check(b).anomalies[0].details["overwritten_by"] == 2
    b = HistoryBuilder()
    b.op(0, "write", 0, 1 * MS, value=1, key="k")
    b.op(0, "cas", 2 * MS, 3 * MS, value=[7, 2], key="k", type="fail")
    b.op(1, "read", 5 * MS, 6 * MS, key="k", result=1)
    assert check(b).valid is True


def test_keys_are_independent():
    b = HistoryBuilder()
    b.op(0, "write", 0, 1 * MS, value=1, key="a")
    b.op(0, "write", 2 * MS, 3 * MS, value=2, key="b")
    b.op(1, "read", 5 * MS, 6 * MS, key="a", result=1)
    assert check(b).valid is True


def test_unwritten_values_are_counted_not_judged():
    b = two_writes().op(1, "read", 5 * MS, 6 * MS, key="k", result=99)
    b.op(0, "write", 7 * MS, 8 * MS, value=5, key="k", type="fail")
    b.op(1, "read", 9 * MS, 10 * MS, key="k", result=5)
    r = check(b)
    assert r.valid is True and r.stats["reads_of_unwritten_values"] == 1
    assert r.stats["reads_of_failed_writes"] == 1 and r.warnings


def test_failed_reads_do_not_count():
    b = two_writes().op(1, "read", 10 * MS, 11 * MS, key="k", result=1, type="fail")
    assert check(b).valid is True


def test_applies_to_register_ops_only():
    assert STALE_READS.applies(two_writes().history())
    assert not STALE_READS.applies(HistoryBuilder().op(0, "add", 0, MS, value=1).history())


@SETTINGS
@given(register_histories())
def test_generated_register_histories_are_valid(gen):
    r = STALE_READS.check(gen.history())
    assert r.valid is True, [a.message for a in r.anomalies]


@SETTINGS
@given(register_histories(inject="stale-read"))
def test_one_read_of_an_overwritten_value_is_found(gen):
    r = STALE_READS.check(gen.history())
    assert r.valid is False
    assert {a.kind for a in r.anomalies} == {"stale-read"}
    assert any(gen.where["read_index"] in a.ops for a in r.anomalies)


# -- naive oracle ---------------------------------------------------------------------------

def _written(row) -> object:
    return row["value"][1] if row["f"] == "cas" else row["value"]


def oracle(h: History) -> dict[int, int]:
    """{read invoke index: lag} by the module's definition, pair by pair."""
    rows = h.pairs.to_dict("records")
    writes = [r for r in rows if r["f"] in ("write", "cas") and r["type"] != "fail"]
    out = {}
    for r in rows:
        if r["f"] != "read" or r["type"] != "ok":
            continue
        mine = [w for w in writes if w["key"] == r["key"]]
        if r["result"] is None:
            w_done = -(2 ** 63)
        else:
            cands = [w for w in mine if _written(w) == r["result"]]
            if not cands:
                continue
            w_done = max(w["complete_time"] if w["type"] == "ok" else OPEN for w in cands)
        if w_done == OPEN:
            continue
        w2 = [w["complete_time"] for w in mine if w["type"] == "ok"
              and w["invoke_time"] > w_done and w["complete_time"] < r["invoke_time"]]
        if w2:
            out[r["invoke_index"]] = r["invoke_time"] - min(w2)
    return out


@st.composite
def arbitrary_register_histories(draw: st.DrawFn) -> History:
    b = HistoryBuilder()
    values: list[object] = [None]
    p = 0
    for i in range(draw(st.integers(0, 10))):
        s = draw(st.integers(0, 20)) * MS
        key = draw(st.sampled_from(["a", "b"]))
        typ = draw(st.sampled_from(["ok", "ok", "info", "fail"]))
        if draw(st.booleans()):  # sometimes a value written twice (the promise broken)
            v = draw(st.sampled_from([i, i, i // 3]))
            b.op(p, "write", s, s + draw(st.integers(1, 6)) * MS, value=v, key=key, type=typ)
        else:
            b.op(p, "cas", s, s + draw(st.integers(1, 6)) * MS, value=[i - 1, i], key=key,
                 type=typ)
        values.append(i)
        p += 1
    values.append(99)  # never written
    for _ in range(draw(st.integers(0, 8))):
        s = draw(st.integers(0, 30)) * MS
        b.op(p, "read", s, s + draw(st.integers(1, 4)) * MS,
             key=draw(st.sampled_from(["a", "b"])), result=draw(st.sampled_from(values)))
        p += 1
    return b.history()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_register_histories())
def test_vectorised_verdicts_match_the_naive_oracle(h):
    r = STALE_READS.check(h)
    got = {a.details["read_index"]: a.details["lag_ns"] for a in r.anomalies}
    assert got == oracle(h)


def test_written_values_of_odd_cas() -> None:
    """A cas writes its `new` whatever the others' shapes (the usual [old, new] lists are
    taken in one pass; anything else row by row: not a pair, a tuple, None)."""
    import numpy as np

    from chaos.checkers.stale_reads import _written
    values = np.empty(6, dtype=object)
    for i, v in enumerate([5, [1, 2], [3, [4]], (6, 7), None, [1, 2, 3]]):
        values[i] = v
    fs = np.array(["write", "cas", "cas", "cas", "cas", "cas"], dtype=object)
    assert _written(values, fs).tolist() == [5, 2, [4], 7, None, None]
    usual = values[:3].copy()
    assert _written(usual, fs[:3]).tolist() == [5, 2, [4]]
