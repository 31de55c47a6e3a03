"""Long keys cut into pieces (chaos.history.stream, chaos.checkers.sharded): the same verdicts,
counts and anomalies as the in-memory checkers, the oracle, on register histories whose keys
are cut many times; stale reads and linearizability see across the cuts."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chaos.history.stream as stream
from chaos.checkers.sharded import analyze_path
from chaos.history.stream import split_history
from chaos.report.results import results_document
from tests.strategies import register_histories
from tests.test_sharded import _norm, oracle

ROOT = Path(__file__).resolve().parents[1]


def pieces_doc(path: Path, n: int, piece_ops: int) -> dict[str, Any]:
    out, digest = analyze_path(path, None, {}, n_shards=n, piece_ops=piece_ops)
    return same_stats(_norm(results_document(out, history=digest, path=str(path), fmt="jsonl")))


def same_stats(d: dict[str, Any]) -> dict[str, Any]:
    """What legitimately differs for a cut key: the in-memory search leaves out unknown ops
    nothing observes in the whole key; a piece cannot know that, so it keeps them (ops,
    dropped_ops, steps, peak_configs differ; the verdict cannot)."""
    r = d["results"].get("linearizable")
    if r is not None:
        for k in ("ops", "dropped_ops", "steps", "peak_configs"):
            r["stats"].pop(k, None)
    return d


def gen(tmp: Path, lines: int, seed: int, keys: int = 3) -> Path:
    """A register history from benchmarks/gen_history.py (in this process)."""
    out = tmp / f"reg-{seed}.jsonl"
    spec = importlib.util.spec_from_file_location("gen_history",
                                                  ROOT / "benchmarks" / "gen_history.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--workload", "register", "--lines", str(lines), "--keys", str(keys),
                     "--seed", str(seed), "--out", str(out)]) in (0, None)
    return out


def stale_late(path: Path, seed: int) -> Path:
    """The same history with one late ok read returning a value written early on: a stale
    read (and not linearizable) whose write is many pieces before it."""
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    early = next(op["value"] for op in lines if op.get("f") == "write" and op["type"] == "ok")
    key = next(op["key"] for op in lines if op.get("f") == "write" and op["value"] == early)
    late = [i for i, op in enumerate(lines) if op.get("f") == "read" and op["type"] == "ok"
            and op.get("key") == key]
    lines[late[-(seed % 50) - 1]]["value"] = early
    out = path.with_name(path.stem + "-stale.jsonl")
    out.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in lines))
    return out


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "BLOCK_LINES", 101)  # a cut is possible every 101 lines


def test_keys_are_cut_and_pieces_read_in_order(tmp_path: Path, small_blocks: None) -> None:
    path = gen(tmp_path, 8000, 1)
    split = split_history(path, tmp_path / "s", n_shards=2, piece_ops=300,
                          cuttable=frozenset({"read", "write", "cas"}))
    assert min(split.cut_keys.values()) >= 1 and sum(split.cut_keys.values()) >= 4, split.cut_keys
    last: dict[Any, int] = {}
    for i in range(split.n_shards):
        pairs = split.shard(i).pairs
        for key, t0 in zip(pairs["key"], pairs["invoke_time"]):
            assert t0 > last.get((key, split.piece(i) - 1), -1), "a piece overlaps the last"
        for key, grp in pairs.groupby("key"):
            last[(key, split.piece(i))] = int(grp["complete_time"].max())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cut_register_histories_same_as_in_memory(tmp_path: Path, small_blocks: None,
                                                  seed: int) -> None:
    path = gen(tmp_path, 6000, seed)
    assert pieces_doc(path, 2, 200) == same_stats(oracle(path))
    bad = stale_late(path, seed)
    want = same_stats(oracle(bad))
    assert want["results"]["stale-reads"]["valid"] is False
    assert want["results"]["linearizable"]["valid"] is False
    assert pieces_doc(bad, 2, 200) == want


@settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(register_histories(max_ops=40, keys=("k1",)),
       st.sampled_from([None, "stale-read"]), st.integers(1, 6), st.data())
def test_generated_histories_cut_finely_same_as_in_memory(
        tmp_path_factory: pytest.TempPathFactory, gen: Any, inject: Any, piece: int,
        data: st.DataObject) -> None:
    if inject:
        gen = data.draw(register_histories(inject=inject, max_ops=40, keys=("k1",)))
    path = tmp_path_factory.mktemp("h") / "h.jsonl"
    path.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in gen.ops))
    old = stream.BLOCK_LINES
    stream.BLOCK_LINES = 3
    try:
        assert pieces_doc(path, 1, piece) == same_stats(oracle(path))
    finally:
        stream.BLOCK_LINES = old


json_atoms = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2),
                       st.sampled_from(["a", "b"]))
json_values = st.recursive(json_atoms, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["x", "y"]), inner,
                                                 max_size=2)), max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values, max_size=12), st.data())
def test_mentioned_is_the_atoms_seen(xs: list[Any], data: st.DataObject) -> None:
    """_mentioned(seen, xs) is the atoms of xs that are in seen (`_atoms` row by row)."""
    from chaos.history.pieces import _atoms, _mentioned
    atoms: set[Any] = set()
    for x in xs:
        atoms.update(_atoms(x))
    some = data.draw(st.lists(st.sampled_from(sorted(atoms, key=repr)), unique=True)
                     if atoms else st.just([]))
    seen = set(some) | data.draw(st.sets(st.one_of(st.integers(-5, 5), st.just((1, 2)),
                                                   st.just("zz"))))
    tuples = any(type(a) is tuple for a in seen)
    want = {a for a in atoms if a in seen}
    assert _mentioned(seen, xs, tuples) == want
    assert _mentioned(seen, xs) == want


def _route_row_by_row(p: Any, keys: list[Any], fs: list[Any], types: list[Any],
                      values: list[Any], results: list[Any], completed: list[int],
                      errors: list[Any]) -> list[int]:
    """The rule Pieces.route implements, one row at a time (the oracle)."""
    from chaos.history.columnar import INT64_MIN
    from chaos.history.pieces import _atoms
    from chaos.history.split import Doubt
    out = []
    for k, f, t, v, r, t1, e in zip(keys, fs, types, values, results, completed, errors):
        if k in p.uncut:
            out.append(0)
            continue
        g = p.piece.get(k, 0)
        if f not in p.cuttable:
            if g:
                raise Doubt("cut")
            p.uncut.add(k)
            p.rows.pop(k, None)
            out.append(0)
            continue
        out.append(g)
        p.rows[k] = p.rows.get(k, 0) + 1
        if g and p.rows[k] == 1:
            p.split.cut_keys[k] = g
        if t1 > p.last.get(k, INT64_MIN):
            p.last[k] = t1
        if t == "info":
            p.info.setdefault(k, set()).update(_atoms(v))
        elif t == "fail" and f == "cas":
            tagged, _ = p.split.failed_cas.get(k, (-1, -1))
            p.split.failed_cas[k] = (g if e == "compare-failed" else tagged, g)
        seen = p.closed.get(k)
        if seen:
            for x in (v, r):
                for a in _atoms(x):
                    if a in seen:
                        p.split.observed[(k, a)] = g
    return out


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_route_is_the_row_by_row_rule(data: st.DataObject) -> None:
    """Blocks of rows on a few keys (some already cut, some with values of earlier pieces'
    unknown ops, fs no carry covers, info rows, failed cas with and without the tag): the
    per-key route leaves the same pieces and bookkeeping as the rule applied row by row."""
    import numpy as np

    from chaos.checkers._frame import object_array
    from chaos.history.pieces import Pieces
    from chaos.history.split import Doubt, Split
    keys = ["a", "b", 1, True]  # 1 == True: one key as a dict tells them
    both = []
    for _ in range(2):
        split = Split(source="x", n_shards=4, directory=Path("."), base_shards=4)
        both.append(Pieces(split, 5, frozenset({"read", "write", "cas"})))
    state = data.draw(st.fixed_dictionaries({
        "piece": st.dictionaries(st.sampled_from(keys[:3]), st.integers(0, 2)),
        "closed": st.dictionaries(st.sampled_from(keys[:3]),
                                  st.sets(st.one_of(st.integers(0, 4), st.just((1, 2))))),
        "uncut": st.sets(st.sampled_from(["b"]))}))
    for p in both:
        p.piece, p.uncut = dict(state["piece"]), set(state["uncut"])
        p.closed = {k: set(v) for k, v in state["closed"].items()}
        p.tupled = {k for k, v in p.closed.items() if any(type(x) is tuple for x in v)}
    n = data.draw(st.integers(1, 30))
    rows = data.draw(st.lists(st.tuples(
        st.sampled_from(keys), st.sampled_from(["read", "write", "cas", "read", "add"]),
        st.sampled_from(["ok", "ok", "info", "fail"]),
        st.one_of(st.none(), st.integers(0, 4), st.lists(st.integers(0, 4), min_size=2,
                                                          max_size=2)),
        st.one_of(st.none(), st.integers(0, 4), st.lists(st.integers(0, 4), min_size=2,
                                                          max_size=2)),
        st.integers(0, 100), st.sampled_from([None, "compare-failed", "other"])),
        min_size=n, max_size=n))
    ks, fs, ts, vs, rs, t1, es = (list(c) for c in zip(*rows))
    # keys as the pairer hands them: codes into the distinct keys (pandas tells 1 from True)
    uniq: list[Any] = []
    at = []
    for k in ks:
        j = next((i for i, u in enumerate(uniq) if u is k), None)
        if j is None:
            j = len(uniq)
            uniq.append(k)
        at.append(j)
    want: Any
    try:
        want = _route_row_by_row(both[0], ks, fs, ts, vs, rs, t1, es)
    except Doubt:
        want = Doubt
    got: Any
    try:
        got = both[1].route(np.array(at), uniq, object_array(fs), object_array(ts),
                            object_array(vs), object_array(rs), np.array(t1),
                            object_array(es)).tolist()
    except Doubt:
        got = Doubt
    assert got == want
    if want is Doubt:
        return
    a, b = both
    assert (a.rows, a.uncut, a.info, a.last) == (b.rows, b.uncut, b.info, b.last)
    assert (a.split.cut_keys, a.split.failed_cas, a.split.observed) == (
        b.split.cut_keys, b.split.failed_cas, b.split.observed)


def test_write_carry_groups_keys_as_a_dict_tells_them() -> None:
    """The carry files a key's writes under one key whatever its rows' spelling of it (1,
    1.0 and true are one key; a list key is its tuple; None is a key of its own)."""
    import numpy as np

    from chaos.checkers._frame import object_array
    from chaos.checkers.carry import _key_groups
    keys = object_array(["a", 1, None, True, ["x", 1], "a", 1.0, ("x", 1), None, "b"])
    names, group = _key_groups(keys)
    assert sorted(map(repr, names)) == sorted(map(repr, ["a", 1, None, ("x", 1), "b"]))
    want = ["a", 1, None, 1, ("x", 1), "a", 1, ("x", 1), None, "b"]
    assert [names[g] for g in group.tolist()] == want
    assert isinstance(group, np.ndarray) and len(set(map(repr, names))) == len(names)


def _first_quiet_row_by_row(lines: list[tuple[int, int, Any, int]], carried: dict[int, Any],
                            waiting: list[Any], last: dict[Any, int]) -> int | None:
    """Where Pairer.next_cut should slice, found one line at a time (the oracle): just after
    the first line (not the block's last) at which a waiting key has no op open and its last
    completion is older than that line's time."""
    from chaos.history.columnar import INT64_MIN
    open_key = dict(carried)  # process -> the key of its open op
    last = dict(last)
    for i, (typ, proc, key, t) in enumerate(lines[:-1]):
        if typ == 0:
            open_key[proc] = key
        else:
            last[open_key.pop(proc)] = t
        for k in waiting:
            if k not in open_key.values() and last.get(k, INT64_MIN) < t:
                return i + 1
    return None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_next_cut_is_the_first_quiescent_line(data: st.DataObject) -> None:
    """Blocks of alternating invokes and completions on a few keys (completions without a
    key, invokes carried open into the block, equal times): the slice Pairer.next_cut picks
    ends just after the first line where a waiting key is quiescent, line by line."""
    import numpy as np

    from chaos.checkers._frame import object_array
    from chaos.history.columnar import Columns
    from chaos.history.pairing import Pairer
    from chaos.history.pieces import Pieces
    from chaos.history.split import Split
    keys = ["a", "b", 7]
    procs = data.draw(st.integers(1, 4))
    split = Split(source="x", n_shards=2, directory=Path("."), base_shards=2)
    pieces = Pieces(split, 10, frozenset({"read", "write"}))
    waiting = data.draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
    for k in keys:
        pieces.rows[k] = 10 if k in waiting else 3
    last = data.draw(st.dictionaries(st.sampled_from(keys), st.integers(0, 3)))
    pieces.last.update(last)
    pairer = Pairer(split, pieces=pieces)
    carried = data.draw(st.dictionaries(st.integers(0, procs - 1), st.sampled_from(keys)))
    for p, k in carried.items():
        pairer.open[p] = (0, p, "write", k, 1, 0, 0, None, False)
    open_ = dict(carried)
    lines: list[tuple[int, int, Any, int]] = []
    t = 3
    for _ in range(data.draw(st.integers(2, 40))):
        p = data.draw(st.integers(0, procs - 1))
        t += data.draw(st.integers(0, 1))
        if p in open_:
            lines.append((1, p, data.draw(st.sampled_from([None, open_.pop(p)])), t))
        else:
            open_[p] = data.draw(st.sampled_from(keys))
            lines.append((0, p, open_[p], t))
    n = len(lines)
    cols = Columns(n)
    cols.n = n
    cols.typ = np.array([x[0] for x in lines], dtype=np.int8)
    cols.pcode = np.array([x[1] for x in lines], dtype=np.int64)
    cols.obj["key"] = object_array([x[2] for x in lines])
    cols.time = np.array([x[3] for x in lines], dtype=np.int64)
    want = _first_quiet_row_by_row(lines, carried, waiting, last)
    assert pairer.next_cut(cols) == want


def test_keys_are_cut_at_their_first_quiescent_line(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """In blocks of 1,000 lines (a key reaches `piece_ops` inside one and waits for the
    next), each key is cut soon after, every slice the finder picks ends in a cut, and the
    verdicts, counts and anomalies are the in-memory checkers'."""
    from chaos.history import pairing
    from chaos.history.pieces import Pieces
    path = gen(tmp_path, 8000, 4)
    slices: list[int] = []
    cuts: list[int] = []
    real_next, real_cut = pairing.Pairer.next_cut, Pieces.cut

    def next_cut(self: Any, cols: Any) -> Any:
        at = real_next(self, cols)
        if at is not None:
            slices.append(len(slices))
        return at

    def cut(self: Any, open_keys: set[Any], now: int) -> None:
        before = dict(self.piece)
        real_cut(self, open_keys, now)
        if self.piece != before and slices and len(cuts) < len(slices):
            cuts.append(slices[-1])
    monkeypatch.setattr(pairing.Pairer, "next_cut", next_cut)
    monkeypatch.setattr(Pieces, "cut", cut)
    monkeypatch.setattr(stream, "BLOCK_LINES", 1000)
    split = split_history(path, tmp_path / "s", n_shards=2, piece_ops=300,
                          cuttable=frozenset({"read", "write", "cas"}))
    assert sum(split.cut_keys.values()) >= 9, split.cut_keys
    assert slices and cuts == slices, (slices, cuts)  # no slice the cut then refused
    sizes: dict[tuple[Any, int], int] = {}  # (key, piece) -> its ops
    for i in range(split.n_shards):
        for key in split.shard(i).pairs["key"].tolist():
            sizes[(key, split.piece(i))] = sizes.get((key, split.piece(i)), 0) + 1
    full = [n for (key, g), n in sizes.items() if split.continues(key, g)]
    assert full and max(full) < 300 + 250, sizes  # cut within about a block of piece_ops
    assert pieces_doc(path, 2, 300) == same_stats(oracle(path))
    bad = stale_late(path, 4)
    want = same_stats(oracle(bad))
    assert want["results"]["linearizable"]["valid"] is False
    assert pieces_doc(bad, 2, 300) == want
