"""The bounded-memory analysis path (chaos.history.stream + chaos.checkers.sharded) against
the in-memory checkers, its oracle: same verdicts, counts, anomalies, reasons and warnings,
whatever the number of shards; bad input still named by file and line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chaos.checkers import run_checkers, select_checkers
from chaos.checkers.sharded import analyze_path, find_ops
from chaos.errors import BadInput
from chaos.history.reader import read_history
from chaos.history.stream import Doubt, split_history
from chaos.report.results import results_document
from tests.strategies import monitor_histories, register_histories, set_histories

ROOT = Path(__file__).resolve().parents[1]
HISTORIES = sorted((ROOT / "histories").glob("*.jsonl"))
CORPUS = ROOT.parent / "shared" / "corpora" / "porcupine"


def _norm(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what legitimately varies: search seconds, and the order of
    anomalies at equal times (shards list them by time, each shard in its own order)."""
    d = json.loads(orjson.dumps(doc, default=str))
    for r in d["results"].values():
        r["stats"].pop("seconds", None)
        r["anomalies"] = sorted(r["anomalies"], key=lambda a: json.dumps(a, sort_keys=True))
        r["warnings"] = sorted(r["warnings"])
        if "undecided" in r["stats"]:
            r["stats"]["undecided"] = sorted(r["stats"]["undecided"], key=repr)
        if r["checker"] == "linearizable" and r["valid"] is False:
            # an invalid key stops the search: which others it had finished depends on the
            # order keys are searched in (chaos.checkers.sharded's module doc), and which keys
            # ran out of their time budget on a loaded machine (undecided) on the time left
            for k in ("keys_valid", "skipped_keys", "steps", "peak_configs", "undecided"):
                r["stats"].pop(k, None)
            r["anomalies"] = [a["kind"] for a in r["anomalies"]]
            r["warnings"] = [w for w in r["warnings"] if "not finished" not in w]
    return d


def oracle(path: Path, names: list[str] | None = None) -> dict[str, Any]:
    h = read_history(path)
    out = run_checkers(h, select_checkers(h, names))
    return _norm(results_document(out, history=h, path=str(path), fmt="jsonl"))


def sharded(path: Path, n: int, names: list[str] | None = None,
            workers: int = 1) -> dict[str, Any]:
    out, digest = analyze_path(path, names, {}, n_shards=n, workers=workers)
    return _norm(results_document(out, history=digest, path=str(path), fmt="jsonl"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_every_stored_history_same_verdict(path: Path, n: int) -> None:
    assert sharded(path, n) == oracle(path)


@pytest.mark.integration
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
def test_every_stored_history_same_verdict_read_in_ranges(path: Path) -> None:
    """Read by several processes, a byte range each (chaos.history.ranges)."""
    want = oracle(path)
    for workers in (2, 4):
        assert sharded(path, 3, workers=workers) == want


@pytest.mark.parametrize("path", HISTORIES[:4], ids=lambda p: p.name)
def test_named_checkers_same(path: Path) -> None:
    names = ["lost-writes", "stale-reads", "perf"]
    assert sharded(path, 3, names) == oracle(path, names)


@pytest.mark.parametrize("workers", [1, pytest.param(3, marks=pytest.mark.integration)])
def test_split_pairs_every_op_once(tmp_path: Path, workers: int) -> None:
    """Shards plus context hold exactly the reader's pairs (row for row), whether one
    process reads the file or several read a byte range each."""
    for path in HISTORIES:
        want = read_history(path).pairs
        split = split_history(path, tmp_path / path.stem, n_shards=3, workers=workers)
        rows = []
        for i in range(3):
            rows += split.shard(i).pairs.to_dict("records")
        rows += split.context_history().pairs.to_dict("records")
        rows.sort(key=lambda r: r["invoke_index"])

        def plain(r: dict[str, Any]) -> str:  # read-set int lists are spilled as int64 arrays
            r = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()}
            return json.dumps(r, default=str, sort_keys=True)
        assert [plain(r) for r in rows] == [plain(r) for r in want.to_dict("records")]
        assert split.warnings == read_history(path).warnings


@pytest.mark.parametrize("workers", [1, pytest.param(3, marks=pytest.mark.integration)])
@pytest.mark.parametrize("bad", sorted((ROOT / "histories" / "bad").glob("*.jsonl")),
                         ids=lambda p: p.name)
def test_bad_input_is_doubted_then_named(bad: Path, workers: int) -> None:
    """The streaming reader never judges a bad history: it doubts, and the in-memory
    reader names file and line (the CLI does exactly this)."""
    with pytest.raises(Doubt):
        analyze_path(bad, None, {}, n_shards=2, workers=workers)
    with pytest.raises(BadInput):
        read_history(bad)


def test_bad_line_deep_in_a_big_history_named_by_the_cli(tmp_path: Path) -> None:
    from tests.runhelp import invoke_cli
    lines = []
    for i in range(0, 200_000, 2):
        lines.append(orjson.dumps({"index": i, "time": i, "process": 0, "type": "invoke",
                                   "f": "add", "key": "s", "value": i}))
        lines.append(orjson.dumps({"index": i + 1, "time": i + 1, "process": 0, "type": "ok",
                                   "f": "add", "key": "s", "value": i}))
    lines[150_001] = b'{"index": 150001, "time": oops}'
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = invoke_cli("analyze", "--no-results", str(path))
    assert code == 4
    assert f"{path}:150002" in err


def _merge(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Interleave generated histories by time as one history (disjoint processes: offset)."""
    out = []
    for n, ops in enumerate(parts):
        for op in ops:
            op = dict(op)
            if isinstance(op.get("process"), int):
                op["process"] += 10_000 * n
            op["_order"] = (op.get("time", op["index"]), n, op["index"])
            out.append(op)
    out.sort(key=lambda o: o.pop("_order"))
    for i, op in enumerate(out):
        op["index"] = i
        op["time"] = op.get("time", i)
    return out


def _keyed(ops: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [{**op, "key": key} if isinstance(op.get("process"), int) else op for op in ops]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data(), n=st.integers(1, 4))
def test_generated_histories_same_verdict(tmp_path_factory: Any, data: Any, n: int) -> None:
    """Valid and broken histories of several keys, plus monitor observations: the sharded
    path agrees with the oracle on all of them."""
    _same_verdict(tmp_path_factory, data, n, 1)


@pytest.mark.integration
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data(), n=st.integers(1, 4), workers=st.integers(2, 4))
def test_generated_histories_same_verdict_read_in_ranges(tmp_path_factory: Any, data: Any,
                                                         n: int, workers: int) -> None:
    """The same, the file read by several processes (boundaries anywhere in a small file)."""
    _same_verdict(tmp_path_factory, data, n, workers)


def _same_verdict(tmp_path_factory: Any, data: Any, n: int, workers: int) -> None:
    kind = data.draw(st.sampled_from(["set", "register"]))
    inject = data.draw(st.sampled_from([None, None, "lost", "stale", "divergent"]
                                       if kind == "set" else [None, None, "stale"]))
    parts = []
    for k in range(data.draw(st.integers(1, 3))):
        if kind == "set":
            g = data.draw(set_histories(inject=inject if k == 0 else None))
        else:
            g = data.draw(register_histories(inject=inject if k == 0 else None,
                                             keys=(f"a{k}", f"b{k}")))
        parts.append(_keyed(g.ops, f"s{k}") if kind == "set" else g.ops)
    if data.draw(st.booleans()):
        parts.append(data.draw(monitor_histories()).ops)
    ops = _merge(parts)
    path = tmp_path_factory.mktemp("h") / "h.jsonl"
    path.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in ops))
    try:
        want = oracle(path)
    except BadInput:
        with pytest.raises(Doubt):
            sharded(path, n, workers=workers)
        return
    assert sharded(path, n, workers=workers) == want


@pytest.mark.skipif(not (CORPUS / "kv").is_dir(), reason=f"no Porcupine corpus at {CORPUS}")
def test_porcupine_corpus_as_jsonl_same_verdict(tmp_path: Path) -> None:
    """Porcupine's kv logs, imported and written as our JSONL: same verdicts both ways."""
    from chaos.history.importers import porcupine
    files = sorted((CORPUS / "kv").iterdir())[:12]
    assert files
    for src in files:
        h = porcupine.load(src)
        path = tmp_path / (src.name + ".jsonl")
        path.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in h.ops))
        try:
            want = oracle(path)
        except BadInput:
            continue
        assert sharded(path, 3) == want, src.name


def test_find_ops_fetches_only_the_wanted_lines() -> None:
    path = ROOT / "histories" / "lost-write-after-failover.jsonl"
    got = find_ops(str(path), {3, 38})
    assert sorted(op["index"] for op in got) == [3, 38]


def test_dead_node_over_many_keys_one_reason(tmp_path: Path) -> None:
    """A node whose final reads of 12 keys (in different shards) all failed: one reason
    naming the first keys, as the in-memory rules give it."""
    ops: list[dict[str, Any]] = []

    def op(**kw: Any) -> None:
        ops.append({"index": len(ops), "time": len(ops) * 1000, **kw})
    for k in range(12):
        op(process=0, type="invoke", f="add", key=f"s{k}", value=k)
        op(process=0, type="ok", f="add", key=f"s{k}", value=k, node="n1")
    for k in range(12):
        for node in ("n1", "n2", "n3"):
            op(process=1, type="invoke", f="read-set", key=f"s{k}", node=node, final=True)
            ok = node != "n3"
            op(process=1, type="ok" if ok else "fail", f="read-set", key=f"s{k}", node=node,
               final=True, value=[k] if ok else None, error=None if ok else "timeout")
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in ops))
    want = oracle(path)
    assert any("final reads of 12 keys" in r for r in
               want["results"]["lost-writes"]["reasons"])
    assert sharded(path, 4) == want


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


def typed(v: Any) -> Any:
    """A value with the type of every part spelled out (True and 1, 1.0 and 1 differ)."""
    if isinstance(v, list):
        return ["list", [typed(x) for x in v]]
    if isinstance(v, dict):
        return ["dict", [(k, typed(x)) for k, x in v.items()]]
    return [type(v).__name__, v]


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_JSON, max_size=8))
def test_spilled_columns_round_trip_exactly(values: list[Any]) -> None:
    """A spilled object column reads back with the same values and the same types (True
    stays True, not 1; 1.0 stays a float; None stays None), whatever JSON it holds."""
    from chaos.history.spill import decode, encode
    values = orjson.loads(orjson.dumps(values))  # what the splitter sees: parsed JSON
    col = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        col[i] = v
    back = decode(encode({"value": col}))["value"].tolist()
    assert [typed(v) for v in back] == [typed(v) for v in values]


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["read-set", "add"]),
                               st.none() | st.lists(st.integers(-(2**63), 2**63 - 1),
                                                    max_size=5) | _JSON), max_size=10))
def test_spilled_read_set_results_round_trip(rows: list[tuple[str, Any]]) -> None:
    """Read-set results packed as int64 arrays read back as the same elements in the same
    rows; everything else as it was."""
    from chaos.history.spill import decode, encode
    rows = orjson.loads(orjson.dumps(rows))
    f = np.array([r[0] for r in rows] + ["x"], dtype=object)[:-1]
    col = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        col[i] = r[1]
    back = decode(encode({"f": f, "result": col}))["result"]
    for (fi, v), got in zip(rows, back.tolist()):
        if isinstance(got, np.ndarray):
            assert fi == "read-set" and got.dtype == np.int64
            # true/false elements pack as 1/0, exactly as lost-writes' flatten (the only
            # reader of read-set results) turns an in-memory read's lists into int64
            assert got.tolist() == [int(x) for x in v]
            assert all(type(x) in (int, bool) for x in v)
        else:
            assert orjson.dumps(got) == orjson.dumps(v)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(_JSON | st.sampled_from(["read", "ok", "n1", "é", ""]),
                                 max_size=8), min_size=1, max_size=3))
def test_coded_columns_round_trip_exactly(batches: list[list[Any]]) -> None:
    """A column spilled as codes (f, key, node, ...: chaos.history.spill.CODED) reads back
    with the same values and types, alone and concatenated with other batches and put in
    another order as Split.shard does; only strings and None are coded (True and 1, equal
    in Python, never share a code)."""
    from chaos.history.spill import Coded, concat, decode, encode
    parts, want = [], []
    for values in batches:
        values = orjson.loads(orjson.dumps(values))
        col = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            col[i] = v
        enc = encode({"key": col})
        if type(enc["key"]) is Coded:
            assert all(type(v) is str or v is None for v in values)
        back = decode(enc)["key"].tolist()
        assert orjson.dumps(back) == orjson.dumps(values)
        assert [type(v) for v in back] == [type(v) for v in values]
        parts.append(decode(enc, coded=True)["key"])
        want += values
    whole = concat(parts)
    order = np.arange(len(want))[::-1].copy()
    got = (whole.take(order).column() if type(whole) is Coded else whole[order]).tolist()
    assert [(type(v), v) for v in got] == [(type(v), v) for v in want[::-1]]


@settings(max_examples=100, deadline=None)
@given(distinct=st.lists(_JSON, min_size=1, max_size=6), picks=st.lists(
    st.integers(0, 5), min_size=64, max_size=200))
def test_shared_objects_round_trip_exactly(distinct: list[Any], picks: list[int]) -> None:
    """A column whose rows share a few objects (the DuckDB reader decodes each distinct text
    once: chaos.history.spill.SHARED) reads back with the same values and types, rows that
    shared an object sharing one again, through concat and take as Split.shard does."""
    from chaos.history.spill import Coded, concat, decode, encode
    distinct = orjson.loads(orjson.dumps(distinct))
    rows = [distinct[p % len(distinct)] for p in picks]
    col = np.empty(len(rows), dtype=object)
    for i, v in enumerate(rows):
        col[i] = v
    enc = encode({"meta": col})
    assert type(enc["meta"]) is Coded  # few objects, many rows
    back = decode(enc)["meta"]
    assert [typed(v) for v in back.tolist()] == [typed(v) for v in rows]
    assert all((back[i] is back[j]) == (rows[i] is rows[j]) for i in range(5)
               for j in range(len(rows)))
    whole = concat([decode(enc, coded=True)["meta"]] * 2)
    order = np.arange(2 * len(rows))[::-1].copy()
    again = whole.take(order).column().tolist()
    assert [typed(v) for v in again] == [typed(v) for v in (rows * 2)[::-1]]


def test_unshared_objects_stay_json() -> None:
    """A column with an object per row (the orjson reader's) is not coded by identity."""
    from chaos.history.spill import Coded, encode
    col = np.empty(100, dtype=object)
    for i in range(100):
        col[i] = {"term": 1}
    assert type(encode({"meta": col})["meta"]) is not Coded


def test_shared_objects_of_a_strided_column() -> None:
    """A column that is a strided view (not contiguous) is coded from a held copy."""
    from chaos.history.spill import decode, encode
    objs = [{"term": 1}, {"term": 2}, [1, 2]]
    col = np.empty(400, dtype=object)
    for i in range(400):
        col[i] = objs[i % 3]
    view = col[::2]
    back = decode(encode({"meta": view}))["meta"].tolist()
    assert back == view.tolist()


@settings(max_examples=100, deadline=None)
@given(picks=st.lists(st.integers(0, 3), min_size=1, max_size=40), data=st.data())
def test_slices_of_a_block_coded_once_read_back_as_coded_apiece(picks: list[int],
                                                                data: st.DataObject) -> None:
    """A block's columns coded once (spill.code_columns) and spilled in slices read back
    exactly as each slice coded on its own: same values, same types, shared objects."""
    from chaos.history.spill import code_columns, decode, encode
    names = ["read", "write", None, "cas"]
    metas = [{"term": 1}, None, {"term": 2}, [1]]
    col = {c: np.empty(len(picks), dtype=object) for c in ("f", "node", "meta", "process")}
    for i, p in enumerate(picks):
        col["f"][i], col["node"][i] = names[p], names[(p + 1) % 4]
        col["meta"][i], col["process"][i] = metas[p], p if p < 3 else "nemesis"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(picks)), max_size=3)))
    block = code_columns(col)
    for a, b in zip([0, *cuts], [*cuts, len(picks)]):
        part = {c: x[a:b] for c, x in col.items()}
        alone = decode(encode(part))
        sliced = decode(encode(part, {c: k.slice(a, b) for c, k in block.items()}))
        for c in col:
            assert [typed(v) for v in sliced[c].tolist()] == [typed(v) for v in
                                                            alone[c].tolist()], c
            assert [typed(v) for v in sliced[c].tolist()] == [typed(v) for v in part[c]], c
