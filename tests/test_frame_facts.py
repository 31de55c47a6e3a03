"""The per-shard facts computed in one pass (chaos.checkers._frame.register_facts,
distinct, chaos.history.model.client_mask) give what the per-row rules give, on usual and
odd columns alike."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers._frame import _scalar, distinct, register_facts
from chaos.history.model import COLUMNS, NAMED_PROCESSES, client_mask, frame_from_columns

_VALUE = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=2),
                      lambda inner: st.lists(inner, max_size=3), max_leaves=4)
_F = st.sampled_from(["read", "write", "cas", "add", "read-set", "get"])


def _obj(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _pairs(rows: list[tuple[str, Any, Any, str]]) -> pd.DataFrame:
    n = len(rows)
    cols: dict[str, np.ndarray] = {c: _obj([None] * n) for c in COLUMNS}
    cols["f"] = _obj([r[0] for r in rows])
    cols["value"] = _obj([r[1] for r in rows])
    cols["result"] = _obj([r[2] for r in rows])
    cols["type"] = _obj([r[3] for r in rows])
    cols["process"] = _obj(list(range(n)))
    for c in ("invoke_time", "complete_time", "invoke_index", "complete_index"):
        cols[c] = np.arange(n, dtype=np.int64)
    cols["final"] = np.zeros(n, dtype=bool)
    return frame_from_columns(cols)


def _facts_by_row(rows: list[tuple[str, Any, Any, str]]) -> tuple[bool, bool, bool, bool]:
    """register_facts' rule, one row at a time (the definition)."""
    reg = [r for r in rows if r[0] in ("read", "write", "cas")]
    ok = all((f != "write" or _scalar(v))
             and (f != "cas" or (isinstance(v, (list, tuple)) and len(v) == 2
                                 and _scalar(v[0]) and _scalar(v[1])))
             and (f != "read" or t != "ok" or _scalar(r)) for f, v, r, t in reg)
    return (bool(reg), any(r[0] in ("write", "cas") for r in rows),
            any(r[0] == "add" for r in rows), ok)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(_F, _VALUE, _VALUE, st.sampled_from(["ok", "fail", "info"])),
                     max_size=8))
def test_register_facts_as_row_by_row(rows: list[tuple[str, Any, Any, str]]) -> None:
    assert register_facts(_pairs(rows)) == _facts_by_row(rows)


def test_register_facts_usual_and_transactional() -> None:
    usual = [("write", 1, None, "ok"), ("cas", [1, 2], None, "fail"), ("read", None, 2, "ok")]
    assert register_facts(_pairs(usual)) == (True, True, False, True)
    txn = [("read", [["r", 9, None]], [["r", 9, 3]], "ok")]
    assert register_facts(_pairs(txn)) == (True, False, False, False)
    failed = [("read", [["r", 9, None]], [["r", 9, 3]], "fail")]  # a failed read's result
    assert register_facts(_pairs(failed)) == (True, False, False, True)  # is not judged
    assert register_facts(_pairs([("add", 1, None, "ok")])) == (False, False, True, True)


def test_distinct_takes_unhashable_values() -> None:
    assert distinct(_obj(["read", "read", None, 1])) == {"read", None, 1}
    assert distinct(_obj(["add", [1, 2], {"a": 1}])) == {"add", (1, 2), (("a", 1),)}


@settings(max_examples=300, deadline=None)
@given(procs=st.lists(st.integers(-2, 2**70) | st.booleans() | st.none()
                      | st.sampled_from([*NAMED_PROCESSES, "3", 3.0]), max_size=6))
def test_client_mask_integers_only(procs: list[Any]) -> None:
    """Client ops are the integer processes: not bools, not "3", not 3.0, not None."""
    want = [type(p) is int for p in procs]
    assert client_mask(pd.Series(_obj(procs), dtype=object)).tolist() == want
    ints = [np.int64(p) for p in procs if type(p) is int and p < 2**62]
    assert client_mask(pd.Series(_obj(ints), dtype=object)).all()


_ODD = st.one_of(_F, st.sampled_from(["ok", "fail", "info", "invoke"]), st.none(),
                 st.integers(-2, 2), st.booleans(), st.lists(st.sampled_from(["read", 1]),
                                                             max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_ODD, _ODD), max_size=30),
       st.lists(st.sampled_from(["read", "write", "cas", "read-set", "ok", "info", "fail",
                                 "nope", 1, 0]), min_size=1, max_size=3))
def test_kinds_masks_are_the_object_comparisons(rows: list[tuple[Any, Any]],
                                                names: list[Any]) -> None:
    """Kinds' masks of f and type are the rows the object column compares equal to one of
    the names (1 == True: as == tells them), and its fs are `distinct`'s, on usual and odd
    columns (None, ints, bools, lists)."""
    from chaos.checkers._frame import Kinds
    pairs = _pairs([(f, None, None, t) for f, t in rows])
    kinds = Kinds(pairs)
    f, t = pairs["f"].to_numpy(), pairs["type"].to_numpy()

    def by_row(col: np.ndarray) -> list[bool]:
        return [any(type(v) is not list and v == n for n in names) for v in col.tolist()]
    assert kinds.f(*names).tolist() == by_row(f)
    assert kinds.type(*names).tolist() == by_row(t)
    assert kinds.fs == distinct(f)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_F, _VALUE, _VALUE, st.sampled_from(["ok", "fail", "info"])),
                min_size=1, max_size=25))
def test_shard_parts_with_kinds_count_as_row_by_row(
        rows: list[tuple[str, Any, Any, str]]) -> None:
    """client_facts and PerfParts given a shard's Kinds count what the rows say, one at a
    time; register_facts gives what it gives working the columns out itself."""
    from chaos.checkers import evidence
    from chaos.checkers._frame import Kinds
    from chaos.checkers.perf import PerfParts
    pairs = _pairs(rows)
    kinds = Kinds(pairs)
    assert register_facts(pairs, kinds) == register_facts(pairs)
    facts = evidence.client_facts(pairs, 1.0, kinds)
    types = [r[3] for r in rows]
    assert (facts.ops, facts.ok, facts.fail, facts.info) == (
        len(rows), types.count("ok"), types.count("fail"), types.count("info"))
    assert facts.ok_reads == sum(1 for r in rows if r[0] == "read" and r[3] == "ok")
    assert facts.ok_read_sets == sum(1 for r in rows if r[0] == "read-set" and r[3] == "ok")
    perf = PerfParts.of(pairs, [], kinds)
    assert perf.counts == {t: types.count(t) for t in ("ok", "fail", "info")}
    for f, (_, lats) in perf.latency.items():  # completed at invoke_time + 0: latency 0
        assert sum(len(x) for x in lats) == sum(1 for r in rows if r[0] == f
                                                and r[3] != "info")
