"""Linearizability window by window (chaos.checkers.linearizable.windows): the verdict equals
the whole-key search's on generated histories, valid and invalid, with windows cut at every
quiescent point; a key checked in pieces with a carry agrees too; an undecided window names
its key and time range."""
from __future__ import annotations

import dataclasses
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.checkers.linearizable import REGISTER, check_linearizable
from chaos.checkers.linearizable.checker import _client_rows, _key_ops
from chaos.checkers.linearizable.windows import REDO_EXACT, windows
from chaos.history.model import History
from chaos.history.summary import unknown_reasons
from tests.strategies import HistoryBuilder, register_histories
from tests.test_linearizable import long_run, register_runs, to_history

WHOLE = {"window_ops": 0}
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def both(h: History, **opts: Any) -> tuple[Any, Any]:
    """(whole-key verdict, verdict with a window cut at every quiescent point)."""
    whole = check_linearizable(h, {**opts, **WHOLE}).valid
    cut = check_linearizable(h, {**opts, "window_ops": 1}).valid
    return whole, cut


def mutate(h: History, seed: int) -> History:
    """Change one ok read's result to another value of the history (or nil): sometimes still
    linearizable, often not: both verdicts get exercised."""
    rnd = random.Random(seed)
    ops = [dict(op) for op in h.ops]
    reads = [op for op in ops if op["f"] == "read" and op["type"] == "ok"]
    values = [op["value"] for op in ops if op["f"] == "write"] + [None]
    if reads:
        rnd.choice(reads)["value"] = rnd.choice(values)
    return History.from_ops(ops)


def test_windows_cut_only_at_quiescent_points():
    b = HistoryBuilder()
    b.op(0, "write", 0, 10, value=1, key="k")
    b.op(1, "read", 5, 20, result=1, key="k")    # overlaps the write: no cut before it
    b.op(0, "write", 21, 30, value=2, key="k")   # after every return: a cut
    b.op(2, "write", 22, None, value=3, key="k")  # never returns: does not block a cut
    b.op(1, "read", 31, 40, result=3, key="k")
    h = b.history()
    groups, _ = _key_ops(_client_rows(h), REGISTER, "auto")
    parts = windows(groups["k"], 1)
    assert [[op.invoke_time for op in w] for w in parts] == [[0, 5], [21, 22], [31]]
    assert windows(groups["k"], 0) == [sorted(groups["k"], key=lambda o: o.invoke_time)]
    # the unknown write of 3 is carried across the cut at 31 and read there: valid
    assert both(h) == (True, True)


def test_unknown_write_carried_across_many_cuts_both_ways():
    """An info write early on, read much later after many cuts: linearizable (it took effect
    late); then the same read before the info write was invoked: not."""
    def run(read_at: int) -> History:
        b = HistoryBuilder()
        b.op(0, "write", 0, 1, value=1, key="k")
        b.op(9, "write", 2, 3, value=99, key="k", type="info")
        for i in range(10):
            b.op(0, "read", 10 * i + 5, 10 * i + 6, result=1, key="k")
        b.op(1, "read", read_at, read_at + 1, result=99, key="k")
        return b.history()
    assert both(run(200)) == (True, True)
    h = run(200)
    ops = [dict(op) for op in h.ops]
    for op in ops:  # the info write now completes as "fail": it did not happen
        if op["f"] == "write" and op["type"] == "info":
            op["type"] = "fail"
    assert both(History.from_ops(ops)) == (False, False)


def test_concurrent_writes_leave_two_states_across_a_cut():
    """Two overlapping writes then a cut: the window may end in either value; a read after
    the cut of either is valid, of a third value not (a search that carried only the first
    end it found would get one of these wrong)."""
    for seen, expected in ((1, True), (2, True), (3, False)):
        b = HistoryBuilder()
        b.op(2, "write", 0, 1, value=3, key="k")
        b.op(0, "write", 2, 10, value=1, key="k")
        b.op(1, "write", 3, 11, value=2, key="k")
        b.op(0, "read", 20, 21, result=seen, key="k")
        assert both(b.history()) == (expected, expected), seen


@SETTINGS
@given(register_runs())
def test_generated_valid_histories_same_verdict(ops):
    assert both(to_history(ops)) == (True, True)


@SETTINGS
@given(register_runs())
def test_generated_invalid_histories_same_verdict(ops):
    ops[-1] = {**ops[-1], "res": 1000}
    assert both(to_history(ops)) == (False, False)


@SETTINGS
@given(register_histories(max_ops=40), st.integers(0, 10**6))
def test_shared_generator_mutated_same_verdict(gen, seed):
    h = gen.history()
    assert both(h) == (True, True)
    whole, cut = both(mutate(h, seed))
    assert whole == cut


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(40, 200), st.sampled_from([0.0, 0.1, 0.3]))
def test_long_runs_with_unknown_ops_same_verdict(seed, n, p_info):
    h = long_run(n, 2, 3, p_info, seed)
    assert both(h) == (True, True)
    whole, cut = both(mutate(h, seed))
    assert whole == cut


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(20, 150), st.sampled_from([0.0, 0.1, 0.3]),
       st.booleans(), st.sampled_from([0, 1, 50]))
def test_inline_read_only_test_same_as_step(seed, n, p_info, bad, window_ops):
    """The search tests reads and failed compares inline (Model.read_only_test) instead of
    stepping them: on generated histories, valid and invalid, with info ops and observed
    failed cas, the result is the same as with every read stepped, to the steps, the
    configurations counted and the counterexample."""
    h = long_run(n, 2, 3, p_info, seed)
    if bad:
        h = mutate(h, seed)
    stepped = dataclasses.replace(REGISTER, read_only_test=None)
    opts = {"window_ops": window_ops, "fail": "observe", "time_limit": 1e9}
    fast = check_linearizable(h, opts).to_dict()
    slow = check_linearizable(h, {**opts, "model": stepped}).to_dict()
    for doc in (fast, slow):
        doc["stats"].pop("seconds")
    assert fast == slow


def _observes_untold(inp: Any, out: Any) -> Any:
    """The register's `observes`, but raising TypeError for every cas (a model that cannot
    say what some ops observe)."""
    if inp[0] == "cas":
        raise TypeError("cannot tell")
    return REGISTER.observes(inp, out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(20, 150), st.sampled_from([0.1, 0.3]),
       st.booleans(), st.sampled_from([0, 1, 50]))
def test_observes_asked_once_per_op_same_result(seed, n, p_info, bad, window_ops):
    """What each op of a searched window observes is asked once (windows.observed) and
    handed to the window's search: the same result, to the steps, as a search that asks
    for itself (the
    whole key: window_ops 0), and a model that raises TypeError for some ops turns the
    unknown-op filter off exactly as before (the same verdict as with the filter off:
    `unknown_effect` None), on generated histories, valid and invalid, with info ops."""
    h = long_run(n, 2, 3, p_info, seed)
    if bad:
        h = mutate(h, seed)
    opts = {"window_ops": window_ops, "fail": "observe", "time_limit": 1e9}
    untold = dataclasses.replace(REGISTER, observes=_observes_untold)
    unfiltered = dataclasses.replace(REGISTER, unknown_effect=None)
    got = check_linearizable(h, {**opts, "model": untold})
    off = check_linearizable(h, {**opts, "model": unfiltered})
    assert got.valid == off.valid == check_linearizable(h, {**opts, **WHOLE}).valid
    if window_ops == 0:  # no window: the search asks observes itself; the same steps
        assert got.stats["steps"] == off.stats["steps"]


def pieces(h: History, cut_time: int) -> tuple[History, History]:
    """The history's ops split by invoke time at `cut_time` (a pair goes whole to the piece
    of its invoke), as the streaming splitter cuts a key."""
    pairs = h.pairs
    first = pairs["invoke_time"] < cut_time
    return (History(ops=[], pairs=pairs[first].reset_index(drop=True), source="a"),
            History(ops=[], pairs=pairs[~first].reset_index(drop=True), source="b"))


def quiescent_times(h: History) -> list[int]:
    """Invoke times before which every op that invoked earlier has completed (any type)."""
    pairs = h.pairs.sort_values("invoke_time")
    out, last = [], -1
    for t0, t1 in zip(pairs["invoke_time"], pairs["complete_time"]):
        if last < t0 and last >= 0:
            out.append(int(t0))
        last = max(last, int(t1))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.sampled_from([0.0, 0.1, 0.3]), st.booleans())
def test_pieces_with_a_carry_same_verdict(seed, p_info, bad):
    """A key split in two pieces at a quiescent point, checked one after the other with the
    carry (and without knowing what the later piece observes): the whole verdict."""
    h = long_run(150, 2, 2, p_info, seed)
    if bad:
        h = mutate(h, seed)
    cuts = quiescent_times(h)
    if not cuts:
        return
    a, b = pieces(h, cuts[random.Random(seed).randrange(len(cuts))])
    whole = check_linearizable(h, WHOLE).valid

    def in_pieces(paths: bool) -> tuple[Any, bool]:
        """(verdict, whether the second piece asked for the key again without paths)"""
        carry: dict[Any, Any] = {}
        opts = {"carry": carry, "window_ops": 1, "paths": paths}
        first = check_linearizable(a, opts)
        if first.valid is not True:
            return first.valid, False
        second = check_linearizable(b, opts)
        redo = any(u["reason"] == REDO_EXACT for u in second.stats["undecided"])
        return second.valid, redo

    assert in_pieces(False) == (whole, False)
    got, redo = in_pieces(True)
    if redo:  # as chaos.checkers.shard_pool does: the pieces again, searched exactly
        assert got == "unknown"
        got, _ = in_pieces(False)
    assert got == whole


def test_undecided_window_names_key_and_time_range():
    h = long_run(3000, 1, 12, 0.0, seed=3)
    r = check_linearizable(h, {"time_limit": 0.0, "window_ops": 50})
    assert r.valid == "unknown"
    undecided = r.stats["undecided"][0]
    assert undecided["key"] == "k0" and undecided["window"] is not None
    t0, t1 = undecided["window"]
    assert 0 <= t0 <= t1 and any("k0" in w and str(t0) in w for w in r.warnings)
    # the summary's first line (why the verdict is unknown) names the key and the window
    first = unknown_reasons({"valid": "unknown", "results": {"linearizable": r}})[0]
    assert "'k0'" in first and f"[{t0}, {t1}]" in first, first
