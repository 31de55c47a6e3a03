"""Lost-writes checker: hand-built histories both ways, generated ones, and a naive oracle."""
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chaos.checkers.lost_writes import LOST_WRITES
from chaos.history.model import OPEN, History
from tests.strategies import MS, HistoryBuilder, set_histories

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check(b: HistoryBuilder):
    return LOST_WRITES.check(b.history())


def kinds(result) -> list[str]:
    return [a.kind for a in result.anomalies]


def base() -> HistoryBuilder:
    """Two acked adds, one read seeing both."""
    b = HistoryBuilder()
    b.op(0, "add", 0, 2 * MS, value=1, node="n1", meta={"term": 1})
    b.op(1, "add", 1 * MS, 3 * MS, value=2, node="n1", meta={"term": 1})
    b.op(0, "read-set", 5 * MS, 6 * MS, result=[1, 2], node="n1")
    return b


def test_all_acked_adds_present_in_final_reads_is_valid():
    b = base()
    b.op(10, "read-set", 20 * MS, 21 * MS, result=[1, 2], final=True, node="n1")
    b.op(11, "read-set", 20 * MS, 22 * MS, result=[1, 2], final=True, node="n2")
    r = check(b)
    assert r.valid is True and r.anomalies == []
    assert r.stats["acknowledged"] == 2 and r.stats["lost"] == 0 and r.stats["final_reads"] == 2


def test_acked_add_missing_from_every_final_read_is_lost():
    b = base()
    b.op(10, "read-set", 20 * MS, 21 * MS, result=[1], final=True, node="n1")
    b.op(11, "read-set", 20 * MS, 22 * MS, result=[1], final=True, node="n2")
    r = check(b)
    assert r.valid is False and kinds(r) == ["lost-write"]
    a = r.anomalies[0]
    assert a.details["element"] == 2 and a.details["acked_by"] == "n1"
    assert a.details["ack_term"] == 1 and a.time == 3 * MS
    ops = b.ops()
    add_lines = [o["index"] for o in ops if o["f"] == "add" and o["value"] == 2]
    final_lines = [o["index"] for o in ops if o.get("final")]
    assert set(add_lines) <= set(a.ops) and set(final_lines) <= set(a.ops)
    assert "element 2" in a.message and "n1" in a.message


def test_observed_element_of_info_add_missing_from_finals_is_lost():
    b = HistoryBuilder()
    b.op(0, "add", 0, 10 * MS, value=7, type="info")
    b.op(1, "read-set", 2 * MS, 3 * MS, result=[7])
    b.op(2, "read-set", 20 * MS, 21 * MS, result=[], final=True)
    r = check(b)
    assert kinds(r) == ["lost-write"] and r.stats["lost"] == 1


def test_present_in_some_final_reads_only_is_divergent():
    b = base()
    b.op(10, "read-set", 20 * MS, 21 * MS, result=[1, 2], final=True, node="n1")
    b.op(11, "read-set", 20 * MS, 22 * MS, result=[1], final=True, node="n2")
    r = check(b)
    assert kinds(r) == ["divergent"]
    assert r.anomalies[0].details["present_on"] == ["n1"]
    assert r.anomalies[0].details["absent_on"] == ["n2"]


def test_never_added_or_failed_add_present_is_unexpected():
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value=1, type="fail")
    b.op(1, "read-set", 5 * MS, 6 * MS, result=[1, 9], final=True)
    r = check(b)
    assert sorted(kinds(r)) == ["unexpected", "unexpected"]
    assert r.stats["unexpected"] == 2


def test_info_add_present_is_recovered_and_absent_indeterminate_both_fine():
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value=1, type="info")
    b.op(1, "add", 0, MS, value=2, type="info")
    b.op(2, "read-set", 5 * MS, 6 * MS, result=[1], final=True)
    r = check(b)
    assert r.valid is True
    assert r.stats["recovered"] == 1 and r.stats["indeterminate"] == 1


def test_absent_after_ack_then_present_later_is_a_stale_set_read():
    b = HistoryBuilder()
    b.op(0, "add", 0, 2 * MS, value=1, node="n1")
    b.op(1, "read-set", 3 * MS, 4 * MS, result=[], node="n2")   # invoked after the ack
    b.op(1, "read-set", 6 * MS, 7 * MS, result=[1], node="n1")
    b.op(2, "read-set", 20 * MS, 21 * MS, result=[1], final=True)
    r = check(b)
    assert kinds(r) == ["stale-set-read"]
    a = r.anomalies[0]
    assert a.details["lag_ns"] == 1 * MS and a.details["absent_read_node"] == "n2"


def test_concurrent_read_missing_the_element_is_not_stale():
    b = HistoryBuilder()
    b.op(0, "add", 0, 4 * MS, value=1)
    b.op(1, "read-set", 1 * MS, 2 * MS, result=[])  # invoked before the ack: may miss it
    b.op(2, "read-set", 20 * MS, 21 * MS, result=[1], final=True)
    assert check(b).valid is True


def test_without_final_reads_the_latest_read_plays_their_role():
    b = base()
    b.op(3, "read-set", 10 * MS, 11 * MS, result=[2])
    r = check(b)
    assert kinds(r) == ["lost-write"] and r.anomalies[0].details["element"] == 1
    assert r.stats["final_reads"] == 1


def test_add_acked_after_the_last_read_began_is_never_read_not_lost():
    b = HistoryBuilder()
    b.op(0, "read-set", 0, MS, result=[])
    b.op(1, "add", 2 * MS, 3 * MS, value=5)
    r = check(b)
    assert r.valid is True and r.stats["never_read"] == 1 and r.stats["lost"] == 0


def test_keys_are_separate_sets():
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value=1, key="a")
    b.op(1, "add", 0, MS, value=1, key="b")
    b.op(2, "read-set", 5 * MS, 6 * MS, result=[1], key="a", final=True)
    b.op(3, "read-set", 5 * MS, 6 * MS, result=[], key="b", final=True)
    r = check(b)
    assert kinds(r) == ["lost-write"] and r.anomalies[0].key == "b"


def test_string_elements_and_duplicates_in_a_read():
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value="x")
    b.op(1, "add", 0, MS, value="y")
    b.op(2, "read-set", 5 * MS, 6 * MS, result=["x", "x"], final=True, node="n1")
    b.op(3, "read-set", 5 * MS, 6 * MS, result=["y"], final=True, node="n2")
    r = check(b)
    assert sorted(kinds(r)) == ["divergent", "divergent"]


def test_cap_on_listed_anomalies_keeps_full_counts():
    b = HistoryBuilder()
    for i in range(30):
        b.op(i, "add", 0, MS, value=i)
    b.op(99, "read-set", 5 * MS, 6 * MS, result=[], final=True)
    r = LOST_WRITES.check(b.history(), {"max_anomalies": 5})
    assert r.stats["lost"] == 30 and len(r.anomalies) == 5 and r.warnings


def test_no_set_ops_applies_false():
    b = HistoryBuilder().op(0, "read", 0, MS, key="k", result=None)
    assert not LOST_WRITES.applies(b.history())
    assert LOST_WRITES.applies(base().history())


# -- generated histories --------------------------------------------------------------------

@SETTINGS
@given(set_histories())
def test_generated_set_histories_are_valid(gen):
    r = LOST_WRITES.check(gen.history())
    assert r.valid is True, [a.message for a in r.anomalies]


@SETTINGS
@given(set_histories(inject="lost-write"))
def test_one_dropped_acked_add_is_found(gen):
    r = LOST_WRITES.check(gen.history())
    assert r.valid is False
    assert kinds(r) == ["lost-write"]
    assert r.anomalies[0].details["element"] == gen.where["element"]


@SETTINGS
@given(set_histories(rotate=True, max_ops=40))
def test_generated_rotating_key_histories_are_valid(gen):
    r = LOST_WRITES.check(gen.history())
    assert r.valid is True, [a.message for a in r.anomalies]


@SETTINGS
@given(set_histories(inject="lost-write", rotate=True, max_ops=40))
def test_one_dropped_acked_add_on_rotating_keys_is_found_on_its_key(gen):
    r = LOST_WRITES.check(gen.history())
    assert r.valid is False and kinds(r) == ["lost-write"]
    a = r.anomalies[0]
    assert a.details["element"] == gen.where["element"] and a.key == gen.where["key"]


@SETTINGS
@given(set_histories(inject="lost-write", rotate=True, max_ops=40), st.data())
def test_an_element_in_another_keys_final_reads_is_still_lost(gen, data):
    """(key, element): the lost element showing up in the final reads of another key does
    not save it; there it is unexpected (never added to that key)."""
    keys = sorted({o["key"] for o in gen.ops if o.get("final")})
    other = [k for k in keys if k != gen.where["key"]]
    assume(other)
    target = data.draw(st.sampled_from(other))
    for o in gen.ops:
        if o.get("final") and o["key"] == target and o["type"] == "ok":
            o["value"] = sorted([*o["value"], gen.where["element"]], key=str)
    r = LOST_WRITES.check(gen.history())
    found = {(a.kind, a.key) for a in r.anomalies}
    assert ("lost-write", gen.where["key"]) in found
    assert ("unexpected", target) in found


# -- a naive oracle over arbitrary (not necessarily sane) histories ------------------------

def oracle(h: History) -> dict[str, int]:
    """The module's definitions, element by element, in plain Python."""
    rows = h.pairs.to_dict("records")
    adds = [r for r in rows if r["f"] == "add"]
    reads = [r for r in rows if r["f"] == "read-set" and r["type"] == "ok"]
    attempted_final = {r["key"] for r in rows if r["f"] == "read-set" and r["final"]}
    elems = {(a["key"], a["value"]) for a in adds}
    elems |= {(r["key"], e) for r in reads for e in (r["result"] or [])}
    out = dict.fromkeys(["lost", "divergent", "unexpected", "stale", "recovered",
                         "never_read", "indeterminate"], 0)
    for key, e in elems:
        kr = [r for r in reads if r["key"] == key]
        finals = [r for r in kr if r["final"]]
        flagged = key in attempted_final  # attempted finals (even all failed): no stand-in
        if not flagged and kr:
            finals = [max(kr, key=lambda r: (r["invoke_time"], r["invoke_index"]))]
        mine = [a for a in adds if a["key"] == key and a["value"] == e]
        ok = any(a["type"] == "ok" for a in mine)
        info = any(a["type"] == "info" for a in mine)
        ack = min((a["complete_time"] for a in mine if a["type"] == "ok"), default=OPEN)
        has = [r for r in kr if e in (r["result"] or [])]
        known = min([ack] + [r["complete_time"] for r in has])
        in_final = sum(1 for f in finals if e in (f["result"] or []))
        if known != OPEN and in_final == 0 and any(f["invoke_time"] > known for f in finals):
            out["lost"] += 1
        if flagged and 0 < in_final < len(finals):
            out["divergent"] += 1
        if has and not (ok or info):
            out["unexpected"] += 1
        if has and info and not ok:
            out["recovered"] += 1
        if not has and info and not ok:
            out["indeterminate"] += 1
        if known != OPEN and any(
                ra["invoke_time"] > known and e not in (ra["result"] or [])
                and any(rp["invoke_time"] > ra["invoke_time"] for rp in has) for ra in kr):
            out["stale"] += 1
        if ok and not any(r["invoke_time"] > ack for r in kr):
            out["never_read"] += 1
    return out


@st.composite
def arbitrary_set_histories(draw: st.DrawFn) -> History:
    elems = draw(st.sampled_from([[1, 2, 3, 4], ["a", "b", "c"]]))
    keys = draw(st.sampled_from([[None], ["x", "y"]]))
    b = HistoryBuilder()
    p = 0
    for _ in range(draw(st.integers(0, 8))):
        s = draw(st.integers(0, 20)) * MS
        b.op(p, "add", s, s + draw(st.integers(1, 5)) * MS, value=draw(st.sampled_from(elems)),
             key=draw(st.sampled_from(keys)), type=draw(st.sampled_from(["ok", "info", "fail"])))
        p += 1
    for _ in range(draw(st.integers(0, 6))):
        s = draw(st.integers(0, 30)) * MS
        b.op(p, "read-set", s, s + draw(st.integers(1, 5)) * MS,
             result=sorted(draw(st.sets(st.sampled_from(elems))), key=str),
             key=draw(st.sampled_from(keys)), final=draw(st.booleans()),
             type=draw(st.sampled_from(["ok", "ok", "ok", "fail"])))
        p += 1
    return b.history()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_set_histories())
def test_vectorised_counts_match_the_naive_oracle(h):
    r = LOST_WRITES.check(h)
    want: dict[str, Any] = oracle(h)
    got = {k: r.stats[k] for k in want}
    assert got == want
    assert r.valid is (want["lost"] + want["divergent"] + want["unexpected"] + want["stale"] == 0)
