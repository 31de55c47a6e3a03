"""Witness paths (chaos.checkers.linearizable.witness): every path found is a linearization
(checked by `verify`, which does not share the path's code, and by the exact search from the
same start); the checker's verdict is the same with and without paths, on generated
histories valid and invalid, whole, in windows and in pieces; each repair (pull, insert) is
needed by some history and none is taken where real time forbids it."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chaos.checkers.shard_pool as shard_pool
from chaos.checkers.linearizable import REGISTER, check_linearizable
from chaos.checkers.linearizable.checker import _client_rows, _key_ops
from chaos.checkers.linearizable.search import search
from chaos.checkers.linearizable.windows import windows
from chaos.checkers.linearizable.witness import verify, witness
from chaos.history.model import History
from tests.strategies import HistoryBuilder, register_histories
from tests.test_linearizable import long_run, register_runs, to_history
from tests.test_linearizable_windows import mutate

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def key_windows(h: History, min_ops: int) -> list[list[Any]]:
    groups, _ = _key_ops(_client_rows(h), REGISTER, "auto")
    return [w for ops in groups.values() for w in windows(ops, min_ops)]


def exact(ops: list[Any], start: tuple[Any, int]) -> bool:
    gen = search(REGISTER, ops, starts=[start])
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value.valid is True


def assert_paths_sound(h: History) -> int:
    """Every path found on h's windows (from the initial state) verifies, and the exact
    search agrees the window is linearizable from there; returns how many were found."""
    found = 0
    for ops in key_windows(h, 1) + key_windows(h, 0):
        start = (REGISTER.init(), 0)
        path = witness(REGISTER, ops, [start])
        if path is None:
            continue
        found += 1
        assert verify(REGISTER, ops, start, path.order) is None, path.order
        assert exact(ops, start), "a path where the exact search finds none"
    return found


def verdicts(h: History, **opts: Any) -> tuple[Any, Any]:
    return (check_linearizable(h, {**opts, "paths": True}).valid,
            check_linearizable(h, {**opts, "paths": False}).valid)


@SETTINGS
@given(register_runs())
def test_paths_on_valid_runs_are_linearizations(ops):
    h = to_history(ops)
    assert_paths_sound(h)
    assert verdicts(h) == (True, True)


@SETTINGS
@given(register_runs())
def test_no_path_where_a_run_is_invalid(ops):
    ops[-1] = {**ops[-1], "res": 1000}
    h = to_history(ops)
    assert witness(REGISTER, key_windows(h, 0)[0], [(REGISTER.init(), 0)]) is None
    assert_paths_sound(h)
    assert verdicts(h) == (False, False)


@SETTINGS
@given(register_histories(max_ops=40), st.integers(0, 10**6), st.sampled_from([0, 1, 200]))
def test_shared_generator_mutated_same_verdict(gen, seed, window_ops):
    for h in (gen.history(), mutate(gen.history(), seed)):
        assert_paths_sound(h)
        paths, exact_only = verdicts(h, window_ops=window_ops)
        assert paths == exact_only


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(40, 250), st.sampled_from([0.0, 0.1, 0.3]),
       st.sampled_from([1, 20, 200]))
def test_long_runs_with_unknown_ops_same_verdict(seed, n, p_info, window_ops):
    h = long_run(n, 2, 4, p_info, seed)
    assert_paths_sound(h)
    assert verdicts(h, window_ops=window_ops) == (True, True)
    bad = mutate(h, seed)
    assert_paths_sound(bad)
    paths, exact_only = verdicts(bad, window_ops=window_ops)
    assert paths == exact_only


def _ops(build: Any) -> list[Any]:
    b = HistoryBuilder()
    build(b)
    return key_windows(b.history(), 0)[0]


def test_pull_places_a_write_that_returns_after_its_read():
    """The read of 2 returns before the write of 2 does: the write is pulled before it."""
    def build(b: HistoryBuilder) -> None:
        b.op(0, "write", 0, 1, value=1, key="k")
        b.op(1, "write", 2, 10, value=2, key="k")
        b.op(2, "read", 3, 5, result=2, key="k")
    ops = _ops(build)
    path = witness(REGISTER, ops, [(None, 0)])
    assert path is not None and path.state == 2
    assert [ops[j].inp for j in path.order] == [("write", 1), ("write", 2), ("read", None)]
    assert verify(REGISTER, ops, (None, 0), path.order) is None


def test_insert_places_a_read_before_a_write_that_returned_first():
    """The read of 1 is invoked before the write of 2 returns and returns after it: it goes
    before the write; not once the read is invoked after the write returned (real time)."""
    def build(read_at: int) -> Any:
        def go(b: HistoryBuilder) -> None:
            b.op(0, "write", 0, 1, value=1, key="k")
            b.op(1, "write", 2, 5, value=2, key="k")
            b.op(2, "read", read_at, 8, result=1, key="k")
        return go
    ops = _ops(build(4))
    path = witness(REGISTER, ops, [(None, 0)])
    assert path is not None and path.state == 2
    assert [ops[j].inp[0] for j in path.order] == ["write", "read", "write"]
    assert verify(REGISTER, ops, (None, 0), path.order) is None
    late = _ops(build(6))
    assert witness(REGISTER, late, [(None, 0)]) is None
    assert not exact(late, (None, 0))


def test_an_unknown_write_is_used_only_when_observed():
    """An info write of 3 read later: pulled before the read, marked used; never read: left
    unused (it may never have happened)."""
    def build(read: bool) -> Any:
        def go(b: HistoryBuilder) -> None:
            b.op(0, "write", 0, 1, value=1, key="k")
            b.op(1, "write", 2, 3, value=3, key="k", type="info")
            b.op(0, "read", 4, 5, result=3 if read else 1, key="k")
        return go
    ops = _ops(build(True))
    path = witness(REGISTER, ops, [(None, 0)])
    unknown = next(j for j, op in enumerate(ops) if not op.due)
    assert path is not None and path.used >> unknown & 1 and path.state == 3
    ops = _ops(build(False))
    path = witness(REGISTER, ops, [(None, 0)])
    assert path is not None and not path.used and path.state == 1
    # already used before the window: it cannot take effect again
    ops = _ops(build(True))
    unknown = next(j for j, op in enumerate(ops) if not op.due)
    assert witness(REGISTER, ops, [(None, 1 << unknown)]) is None


def test_verify_catches_what_a_wrong_path_would_do():
    def build(b: HistoryBuilder) -> None:
        b.op(0, "write", 0, 1, value=1, key="k")
        b.op(0, "write", 2, 3, value=2, key="k")
        b.op(1, "read", 4, 5, result=2, key="k")
    ops = _ops(build)
    assert verify(REGISTER, ops, (None, 0), [0, 1, 2]) is None
    assert "returned before" in verify(REGISTER, ops, (None, 0), [1, 0, 2])
    assert "not placed" in verify(REGISTER, ops, (None, 0), [0, 1])
    assert "twice" in verify(REGISTER, ops, (None, 0), [0, 1, 1, 2])
    stale = [op._replace(out=1) if op.read_only else op for op in ops]
    assert "op 2 illegal" in verify(REGISTER, stale, (None, 0), [0, 1, 2])


def test_a_path_end_is_one_state_the_exact_carry_decides():
    """Two overlapping writes, then a cut, then a read of the one a path did not end on:
    valid (the window can end in either), found through the exact search of the key."""
    for seen, expected in ((1, True), (2, True), (3, False)):
        b = HistoryBuilder()
        b.op(0, "write", 2, 10, value=1, key="k")
        b.op(1, "write", 3, 11, value=2, key="k")
        b.op(0, "read", 20, 21, result=seen, key="k")
        assert verdicts(b.history(), window_ops=1) == (expected, expected), seen


@pytest.mark.parametrize("bad", [False, True])
def test_pieces_redo_a_key_exactly_when_a_path_carry_fails(tmp_path, monkeypatch, bad):
    """A key cut into pieces: a piece's window ends on two overlapping writes, the path's
    carry holds the later one, the next piece reads the other: the shards are checked again
    without paths (seen through check_shards' calls) and the verdict is the exact one."""
    import orjson

    import chaos.history.stream as stream
    from chaos.checkers.sharded import analyze_path

    lines: list[dict[str, Any]] = []
    clock = [0]

    def line(proc: int, typ: str, f: str, key: str, value: Any) -> None:
        clock[0] += 1
        lines.append({"process": proc, "type": typ, "f": f, "key": key, "value": value,
                      "time": clock[0]})

    def op(f: str, value: Any, result: Any) -> None:
        line(0, "invoke", f, "k", value)
        line(0, "ok", f, "k", result)
        # another key's op after it: a block may end after k's last completion (a cut)
        v = clock[0]
        line(9, "invoke", "write", "z", v)
        line(9, "ok", "write", "z", v)

    for i in range(300):  # sequential writes and reads, then the two overlapping writes
        op("write", i, i)
        op("read", None, i)
    line(0, "invoke", "write", "k", 1001)
    line(1, "invoke", "write", "k", 1002)
    line(0, "ok", "write", "k", 1001)
    line(1, "ok", "write", "k", 1002)
    for _ in range(300):  # the next piece reads 1001 (7 when bad): 1002 was first
        op("read", None, 7 if bad else 1001)
    for n, line in enumerate(lines):
        line["index"] = n
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    calls: list[bool] = []
    inner = shard_pool.check_shards

    def spy(plan: Any, indices: Any, status: Any = lambda _: None, paths: bool = True,
            lin_spent: float = 0.0) -> Any:
        calls.append(paths)
        assert paths or lin_spent > 0  # the redo goes on with the budget left
        return inner(plan, indices, status, paths, lin_spent)

    monkeypatch.setattr(shard_pool, "check_shards", spy)
    monkeypatch.setattr(stream, "BLOCK_LINES", 101)
    out, _ = analyze_path(path, ["linearizable"], {"window_ops": 1}, n_shards=1, piece_ops=300)
    r = out["results"]["linearizable"]
    assert r.valid is (not bad), r
    assert calls == [True, False], calls


def test_two_inserts_keep_the_states_right():
    """Two reads inserted among the last ops placed: the second goes where the first left
    the states (a read of 2 before the write of 3), which only right states allow."""
    def build(b: HistoryBuilder) -> None:
        b.op(0, "write", 0, 1, value=1, key="k")
        b.op(3, "read", 4, 8, result=1, key="k")
        b.op(1, "write", 2, 5, value=2, key="k")
        b.op(2, "write", 6, 7, value=3, key="k")
        b.op(4, "read", 6, 9, result=2, key="k")
    ops = _ops(build)
    path = witness(REGISTER, ops, [(None, 0)])
    assert path is not None and path.state == 3
    assert verify(REGISTER, ops, (None, 0), path.order) is None
    assert [ops[j].inp for j in path.order] == [
        ("write", 1), ("read", None), ("write", 2), ("read", None), ("write", 3)]


def test_paths_pause_after_windows_they_cannot_do(monkeypatch):
    """Where no path works (here: none is ever found), paths are tried after 1, 2, 4, ...
    windows (at most MAX_BACKOFF), not on every window; the verdict is the search's."""
    from chaos.checkers.linearizable import windows as win
    h = long_run(600, 1, 1, 0.0, seed=5)
    n_windows = len(key_windows(h, 1))
    tries: list[int] = []
    monkeypatch.setattr(win, "witness_path", lambda *a: tries.append(1))
    assert check_linearizable(h, {"window_ops": 1}).valid is True
    assert n_windows > 100
    assert 5 <= len(tries) <= 6 + n_windows // win.MAX_BACKOFF, (len(tries), n_windows)
