"""An adversarial comparison of the bounded-memory analysis (chaos.history.stream, pieces,
chaos.checkers.sharded, carry, linearizable windows) with the in-memory checkers, its oracle.

The bounded path cuts a long register key into pieces at quiescent block boundaries and
carries what the checkers need from piece to piece (possible states and unknown-outcome ops
for linearizability, earlier writes for stale reads). A wrong carry shows only when cuts
happen, so the generator here makes them happen on small histories: blocks of 1-4 lines,
pieces of 1-4 ops, windows of 1 op, and a ticker (a client reading another key) whose lines
fall between the key's completions and the next block's invokes. Without such a line a
one-key history is never cut: a block then ends with one of the key's completions (not
older than the block's last line) or with an invoke of it (open).

The histories have what a carry must get right: info (unknown-outcome) writes and cas that
take effect or not, observed failed compares (error "compare-failed"), plain fails,
processes reused after an info, invokes that never complete, reads of values never
written, and corruptions (a read of an overwritten value, a lost acknowledged write).
Budgets (the carry cap, the time limit) may only turn a verdict into unknown.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import chaos.history.stream as stream
from chaos.checkers import run_checkers, select_checkers
from chaos.checkers.sharded import analyze_path
from chaos.history.reader import read_history
from chaos.report.results import results_document
from tests.strategies import draw_register_value, run_register_model
from tests.test_pieces import same_stats
from tests.test_sharded import _norm

MS = 1_000_000
TICKER = 999  # the ticker's process: reads key "t" between the other ops' lines


@dataclass
class _Op:
    process: int
    f: str
    key: str
    start: int
    end: int | None  # None: never completes
    point: int  # when it takes effect, if it does
    value: Any = None
    result: Any = None
    type: str = "ok"
    error: str | None = None
    happens: bool = True


@st.composite
def register_runs(draw: st.DrawFn, max_ops: int = 24) -> list[dict[str, Any]]:
    """A register history (JSONL op lines) from a sequential model run at each op's effect
    point, then maybe corrupted; see the module doc."""
    keys = draw(st.sampled_from([("k1",), ("k1",), ("k1", "k2")]))
    n_procs = draw(st.integers(1, 4))
    reuse = draw(st.booleans())  # a process goes on after an info (else: a new id)
    observe_fails = draw(st.booleans())  # failed compares tagged "compare-failed"
    hangs = draw(st.integers(0, 3)) == 0  # some info invokes never complete (no cut after)
    clocks = [draw(st.integers(0, 2)) * MS for _ in range(n_procs)]
    done = [False] * n_procs
    ops: list[_Op] = []
    counter = 0
    for _ in range(draw(st.integers(min(6, max_ops), max_ops))):
        p = draw(st.integers(0, n_procs - 1))
        if done[p]:
            continue
        start = clocks[p] + draw(st.integers(1, 3)) * MS
        end = start + draw(st.integers(1, 6)) * MS
        point = draw(st.integers(start, end))
        f = draw(st.sampled_from(["read", "read", "write", "write", "cas"]))
        typ = draw(st.sampled_from(["ok"] * 5 + ["info", "info", "info", "fail"]))
        op = _Op(p, f, draw(st.sampled_from(keys)), start, end, point, type=typ)
        op.value, counter = draw_register_value(draw, f, counter)
        if f == "read" and typ == "fail":
            op.type = "ok"
        if typ == "info" and hangs and draw(st.integers(0, 3)) == 0:
            op.end, done[p] = None, True  # never completes: the process is gone
        op.happens = op.type == "ok" or (op.type == "info" and f != "read"
                                         and draw(st.booleans()))
        if op.type == "fail":
            op.error = "timeout"
        ops.append(op)
        clocks[p] = (end if op.end is not None else start) + MS
    run_register_model(ops, "compare-failed" if observe_fails else None)
    corrupt = draw(st.sampled_from([None, None, "read", "lost"]))
    reads = [o for o in ops if o.f == "read" and o.type == "ok"]
    if corrupt == "read" and reads:
        written = [o.value if o.f == "write" else o.value[1] for o in ops if o.f != "read"]
        victim = reads[draw(st.integers(0, len(reads) - 1))]
        victim.result = draw(st.sampled_from([None, 999, *written]))
    elif corrupt == "lost":
        acked = [o for o in ops if o.f == "write" and o.type == "ok"]
        if acked:  # an acknowledged write that never took effect: later reads miss it
            victim = acked[draw(st.integers(0, len(acked) - 1))]
            victim.happens = False
            state = {}
            for op in sorted(ops, key=lambda o: o.point):
                if op.f == "read" and op.type == "ok":
                    op.result = state.get(op.key)
                elif op.happens and op.f == "write":
                    state[op.key] = op.value
                elif op.happens and op.f == "cas" and op.value[0] == state.get(op.key):
                    state[op.key] = op.value[1]
    return _lines(ops, reuse, draw(st.booleans()))


def _lines(ops: list[_Op], reuse: bool, ticker: bool) -> list[dict[str, Any]]:
    """The op lines in time order, indexed; with `ticker`, a client reading key "t" (never
    written) every millisecond, half a millisecond off the others' times."""
    events: list[tuple[int, int, dict[str, Any]]] = []
    gen: dict[int, int] = {}
    for op in sorted(ops, key=lambda o: o.start):
        pid = op.process + (0 if reuse else 100 * gen.get(op.process, 0))
        base = {"process": pid, "f": op.f, "key": op.key}
        events.append((op.start, len(events), {**base, "type": "invoke", "value": op.value}))
        if op.end is None:
            continue
        done: dict[str, Any] = {**base, "type": op.type,
                                "value": op.result if op.f == "read" else op.value}
        if op.f == "read" and op.type != "ok":
            done["value"] = None
        if op.error is not None:
            done["error"] = op.error
        events.append((op.end, len(events), done))
        if op.type == "info":
            gen[op.process] = gen.get(op.process, 0) + 1
    if ticker and events:
        last = max(t for t, _, _ in events)
        for t in range(0, last + 2 * MS, MS):
            events.append((t + MS // 2, len(events),
                           {"process": TICKER, "f": "read", "key": "t", "type": "invoke",
                            "value": None}))
            events.append((t + MS // 2 + 1, len(events),
                           {"process": TICKER, "f": "read", "key": "t", "type": "ok",
                            "value": None}))
    events.sort(key=lambda e: (e[0], e[1]))
    return [{"index": i, "time": t, **line} for i, (t, _, line) in enumerate(events)]


def write(ops: list[dict[str, Any]], path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in ops))
    return path


def oracle(path: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """The in-memory verdict, each key searched whole (no windows)."""
    h = read_history(path)
    out = run_checkers(h, select_checkers(h, None), {**opts, "window_ops": 0})
    return same_stats(_norm(results_document(out, history=h, path=str(path), fmt="jsonl")))


def bounded(path: Path, opts: dict[str, Any], block: int, piece: int,
            n_shards: int = 1, check_workers: int = 1) -> dict[str, Any]:
    """The bounded path with cuts forced: blocks of `block` lines, pieces of `piece` ops,
    windows of one op; the shards checked by `check_workers` processes."""
    old = stream.BLOCK_LINES
    stream.BLOCK_LINES = block
    try:
        out, digest = analyze_path(path, None, {**opts, "window_ops": 1}, n_shards=n_shards,
                                   workers=1, piece_ops=piece, check_workers=check_workers)
    finally:
        stream.BLOCK_LINES = old
    return same_stats(_norm(results_document(out, history=digest, path=str(path),
                                             fmt="jsonl")))


def verdicts(doc: dict[str, Any]) -> dict[str, Any]:
    return {"valid": doc["valid"], **{k: r["valid"] for k, r in doc["results"].items()}}


def _ops(*lines: dict[str, Any]) -> list[dict[str, Any]]:
    """Hand-written lines (times in ms), indexed, with a ticker line after each one so a
    block may end at a quiescent point (see the module doc)."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        t = line["time"] * MS
        out.append({**line, "time": t})
        out.append({"process": TICKER, "f": "read", "key": "t",
                    "type": "ok" if n % 2 else "invoke", "value": None, "time": t + 1})
    if len(lines) % 2:
        out.append({**out[-1], "type": "ok"})
    return [{"index": i, **line} for i, line in enumerate(out)]


def _op(process: int, typ: str, f: str, value: Any, time: int, **kw: Any) -> dict[str, Any]:
    return {"process": process, "type": typ, "f": f, "key": "k", "value": value,
            "time": time, **kw}


#: an info write of 2 (it may take effect, unobserved by any read), then in a later piece a
#: cas 1 -> 3 whose compare failed: linearizable only if the write of 2 took effect. A later
#: piece never mentions 2, yet its failed compare observes "not 1", so the carry must keep
#: the unknown write (it did not: the bounded path said invalid).
FAILED_COMPARE_LATER = _ops(
    _op(0, "invoke", "write", 1, 0), _op(0, "ok", "write", 1, 1),
    _op(1, "invoke", "write", 2, 2), _op(1, "info", "write", 2, 3),
    _op(0, "invoke", "read", None, 10), _op(0, "ok", "read", 1, 11),
    _op(0, "invoke", "cas", [1, 3], 20),
    _op(0, "fail", "cas", [1, 3], 21, error="compare-failed"))

#: an info write of 2, then in a later piece a read of 2: the carry keeps the unknown write
UNKNOWN_WRITE_READ_LATER = _ops(
    _op(0, "invoke", "write", 1, 0), _op(0, "ok", "write", 1, 1),
    _op(1, "invoke", "write", 2, 2), _op(1, "info", "write", 2, 3),
    _op(0, "invoke", "read", None, 10), _op(0, "ok", "read", 2, 11))

#: a key only read (never written), in several pieces: stale-reads counts it once
READ_ONLY_KEY = _ops(*[_op(0, typ, "read", None, 2 * n + (typ == "ok"))
                       for n in range(3) for typ in ("invoke", "ok")])


@pytest.mark.parametrize("fail,error,valid", [
    ("auto", "compare-failed", True), ("observe", "timeout", True),
    ("auto", "timeout", True), ("ignore", "compare-failed", True)])
@pytest.mark.parametrize("block", [1, 2, 3])
def test_failed_compare_in_a_later_piece_may_see_an_unknown_write(
        tmp_path: Path, fail: str, error: str, valid: bool, block: int) -> None:
    ops = [dict(op) for op in FAILED_COMPARE_LATER]
    ops[-2 if ops[-1]["process"] == TICKER else -1]["error"] = error
    path = write(ops, tmp_path / "h.jsonl")
    want = oracle(path, {"fail": fail})["results"]["linearizable"]
    assert want["valid"] is valid
    assert bounded(path, {"fail": fail}, block, 1)["results"]["linearizable"] == want


#: a key written, then in a later piece only read by an info read (which stale-reads does
#: not count): still one key, not none
WRITTEN_THEN_INFO_READ = _ops(
    _op(0, "invoke", "write", 1, 0), _op(0, "ok", "write", 1, 1),
    _op(0, "invoke", "read", None, 4), _op(0, "info", "read", None, 5))


@pytest.mark.parametrize("ops", [READ_ONLY_KEY, WRITTEN_THEN_INFO_READ],
                         ids=["read-only", "written-then-info-read"])
def test_key_in_several_pieces_counted_once(tmp_path: Path,
                                            ops: list[dict[str, Any]]) -> None:
    path = write(ops, tmp_path / "h.jsonl")
    want = oracle(path, {})
    assert want["results"]["stale-reads"]["stats"]["keys"] == 2  # with the ticker's key
    for block in (1, 2, 3):
        assert bounded(path, {}, block, 1) == want


@pytest.mark.parametrize("seen", [1, 1.0, True, 2 ** 64 - 1, 1.5])
def test_read_in_a_later_piece_matches_writes_as_stale_reads_does(tmp_path: Path,
                                                                  seen: Any) -> None:
    """Writes of 1 then 2, and after a cut a read of `seen`: stale-reads takes 1.0 and true
    for 1 (a stale read; the carry looked only for int reads, so it said valid), and a
    value beyond int64 for no write (the carry crashed on it)."""
    ops = _ops(_op(0, "invoke", "write", 1, 0), _op(0, "ok", "write", 1, 1),
               _op(0, "invoke", "write", 2, 2), _op(0, "ok", "write", 2, 3),
               _op(0, "invoke", "read", None, 10), _op(0, "ok", "read", seen, 11))
    path = write(ops, tmp_path / "h.jsonl")
    want = oracle(path, {})["results"]["stale-reads"]
    assert want["stats"]["stale"] == (1 if seen == 1 else 0)
    assert bounded(path, {}, 1, 1)["results"]["stale-reads"] == want


def test_counter_adds_and_reads_on_keys_in_other_shards_are_doubted(tmp_path: Path) -> None:
    """Adds on one key, reads on another: the in-memory counter judges their sum (invalid
    here); the sharded path, which has no counter, must not answer (Doubt) whichever shards
    the keys land in."""
    ops = [{"process": 0, "type": "invoke", "f": "add", "key": "a", "value": 1},
           {"process": 0, "type": "ok", "f": "add", "key": "a", "value": 1},
           {"process": 1, "type": "invoke", "f": "read", "key": "b", "value": None},
           {"process": 1, "type": "ok", "f": "read", "key": "b", "value": 5}]
    path = write([{"index": i, "time": i, **op} for i, op in enumerate(ops)],
                 tmp_path / "h.jsonl")
    assert oracle(path, {})["results"]["counter"]["valid"] is False
    for n in range(1, 5):
        with pytest.raises(stream.Doubt):
            analyze_path(path, None, {}, n_shards=n, workers=1)


def test_set_op_on_a_key_already_cut_is_doubted(tmp_path: Path) -> None:
    """A register key cut into pieces, then an add and a read-set on it: lost-writes must
    judge the set from every add before its reads, which no carry gives, so the sharded
    path doubts (the in-memory checkers find the acknowledged add lost)."""
    ops = _ops(_op(0, "invoke", "write", 1, 0), _op(0, "ok", "write", 1, 1),
               _op(0, "invoke", "read", None, 4), _op(0, "ok", "read", 1, 5),
               _op(0, "invoke", "add", 7, 8), _op(0, "ok", "add", 7, 9),
               _op(0, "invoke", "read-set", None, 12), _op(0, "ok", "read-set", [], 13))
    path = write(ops, tmp_path / "h.jsonl")
    assert oracle(path, {})["results"]["lost-writes"]["valid"] is False
    for block in (1, 2):
        with pytest.raises(stream.Doubt, match="no carry covers"):
            bounded(path, {}, block, 1)


class SlowClock:
    """The linearizable checker's clock where a second passes at every reading: a search
    that yields once is out of any time budget (on a tiny history it never is otherwise)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


#: what the oracle may give a bounded run, per verdict: never a more definite answer
AT_MOST = {True: (True, "unknown"), False: (False, "unknown"), "unknown": ("unknown",)}
_UNWRITTEN = "read(s) returned a value no successful or pending write produced"


def comparable(doc: dict[str, Any], oracle_doc: dict[str, Any],
               opts: dict[str, Any]) -> dict[str, Any]:
    """`doc` without what may legitimately differ from `oracle_doc` (chaos.checkers.sharded's
    module doc): past max_anomalies, which anomalies are listed (their number may not
    differ); in a history that is not linearizable, how reads of a value that only a later
    piece writes are counted (a piece cannot know the future)."""
    d = json.loads(json.dumps(doc))
    if "max_anomalies" in opts:
        for r in d["results"].values():
            r["anomalies"] = len(r["anomalies"])
    lin = oracle_doc["results"].get("linearizable", {}).get("valid")
    stale = d["results"].get("stale-reads")
    if lin is False and stale is not None:
        for k in ("reads_of_unwritten_values", "reads_of_failed_writes"):
            stale["stats"].pop(k, None)
        stale["warnings"] = [w for w in stale["warnings"] if _UNWRITTEN not in w]
    return d


OPTS = st.sampled_from([{}, {}, {"fail": "observe"}, {"fail": "ignore"}, {"max_anomalies": 1}])
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck),
                 phases=[Phase.explicit, Phase.reuse, Phase.generate])


@settings(max_examples=25, **_SETTINGS)  # type: ignore[arg-type]
@given(ops=register_runs(), block=st.integers(1, 4), piece=st.integers(1, 4),
       n=st.integers(1, 2), opts=OPTS)
@example(ops=FAILED_COMPARE_LATER, block=1, piece=1, n=1, opts={})
@example(ops=READ_ONLY_KEY, block=1, piece=1, n=1, opts={})
@example(ops=UNKNOWN_WRITE_READ_LATER, block=1, piece=1, n=1, opts={})
def test_generated_cut_histories_same_as_in_memory(
        tmp_path_factory: pytest.TempPathFactory, ops: list[dict[str, Any]], block: int,
        piece: int, n: int, opts: dict[str, Any]) -> None:
    """Register histories cut into pieces of 1-4 ops (see the module doc): the same
    verdicts, counts and anomalies as the in-memory checkers."""
    path = write(ops, tmp_path_factory.mktemp("h") / "h.jsonl")
    want = oracle(path, opts)
    got = bounded(path, opts, block, piece, n)
    assert comparable(got, want, opts) == comparable(want, want, opts)


@pytest.mark.slow
@pytest.mark.integration  # forks checking processes
@settings(max_examples=400, **_SETTINGS)  # type: ignore[arg-type]
@given(ops=register_runs(max_ops=40), block=st.integers(1, 6), piece=st.integers(1, 8),
       n=st.integers(1, 3), opts=OPTS, check_workers=st.sampled_from([1, 1, 2, 3]))
def test_many_generated_cut_histories_same_as_in_memory(
        tmp_path_factory: pytest.TempPathFactory, ops: list[dict[str, Any]], block: int,
        piece: int, n: int, opts: dict[str, Any], check_workers: int) -> None:
    """The same, bigger and more, the shards checked by one to three processes
    (chaos.checkers.shard_pool: forked)."""
    path = write(ops, tmp_path_factory.mktemp("h") / "h.jsonl")
    want = oracle(path, opts)
    got = bounded(path, opts, block, piece, n, check_workers)
    assert comparable(got, want, opts) == comparable(want, want, opts)


@settings(max_examples=25, **_SETTINGS)  # type: ignore[arg-type]
@given(ops=register_runs(), block=st.integers(1, 4), piece=st.integers(1, 4),
       max_carry=st.integers(1, 2), time_limit=st.sampled_from([0.0, 0.0, 60.0]))
def test_budgets_never_give_a_more_definite_verdict(
        tmp_path_factory: pytest.TempPathFactory, ops: list[dict[str, Any]], block: int,
        piece: int, max_carry: int, time_limit: float) -> None:
    """With a carry cap of 1-2 states (windows.MAX_CARRY), and maybe no time (the search
    yields after every step and the checker's clock moves a second at every reading), the
    bounded path may say unknown where the oracle decides, never valid where it is not, and
    never invalid where it is valid."""
    from chaos.checkers.linearizable import checker, search, windows
    path = write(ops, tmp_path_factory.mktemp("h") / "h.jsonl")
    want = verdicts(oracle(path, {}))
    old = windows.MAX_CARRY, search.YIELD_EVERY, checker.time
    windows.MAX_CARRY = max_carry
    if not time_limit:
        search.YIELD_EVERY, checker.time = 1, SlowClock()  # type: ignore[assignment]
    try:
        got = verdicts(bounded(path, {"time_limit": time_limit}, block, piece))
    finally:
        windows.MAX_CARRY, search.YIELD_EVERY, checker.time = old
    for name, v in want.items():
        assert got.get(name) in AT_MOST[v], (name, got, want)


def test_carry_over_the_cap_is_unknown_never_valid(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two overlapping writes, then a cut: the carry holds two states. Capped at one, the
    exact search leaves the key undecided (unknown), whether the read after the cut is of
    either value (valid) or of a third (invalid). With witness paths (the default), the
    read of the value the path ended on is proved valid by the path (its carry is one
    state); the others fall to the exact search: unknown, never valid."""
    from chaos.checkers.linearizable import windows
    for seen, whole in ((1, True), (2, True), (3, False)):
        ops = _ops(_op(0, "invoke", "write", 1, 0), _op(1, "invoke", "write", 2, 1),
                   _op(0, "ok", "write", 1, 2), _op(1, "ok", "write", 2, 3),
                   _op(0, "invoke", "read", None, 10), _op(0, "ok", "read", seen, 11))
        path = write(ops, tmp_path / f"h{seen}.jsonl")
        assert verdicts(oracle(path, {}))["linearizable"] is whole
        assert verdicts(bounded(path, {}, 1, 1))["linearizable"] is whole
        with monkeypatch.context() as m:
            m.setattr(windows, "MAX_CARRY", 1)
            got = verdicts(bounded(path, {"paths": False}, 1, 1))
            with_paths = verdicts(bounded(path, {}, 1, 1))
        assert got["linearizable"] == "unknown", seen
        assert got["valid"] == "unknown"
        # the path ends on the write that returned last (2)
        assert with_paths["linearizable"] == (True if seen == 2 else "unknown"), seen


def test_time_out_in_a_piece_is_unknown_never_valid(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No time left (the search yields after every step and the checker's clock moves a
    second at every reading): a valid key cut into pieces is undecided in its first piece,
    and every later piece is too (nothing to start it from), never valid. Searched exactly
    (paths off): a witness path proves these few writes valid before the search's first
    yield, so no budget is ever checked."""
    from chaos.checkers.linearizable import checker, search
    ops = _ops(*[_op(n % 2, typ, "write", n, 4 * n + (typ == "ok"))
                 for n in range(4) for typ in ("invoke", "ok")])
    path = write(ops, tmp_path / "h.jsonl")
    assert verdicts(oracle(path, {}))["linearizable"] is True
    monkeypatch.setattr(search, "YIELD_EVERY", 1)
    monkeypatch.setattr(checker, "time", SlowClock())
    got = bounded(path, {"time_limit": 0.0, "paths": False}, 1, 1)
    lin = got["results"]["linearizable"]
    assert lin["valid"] == "unknown" and got["valid"] == "unknown"
    assert lin["stats"]["keys_valid"] == 1  # the ticker's key, read only: nothing to search
