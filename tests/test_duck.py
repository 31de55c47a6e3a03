"""DuckDB's reader of big histories (chaos.history.duck) against the orjson reader, its oracle.

For every stored history, generated set and register histories, and generated lines of any
JSON shape (big ints, floats, bools, escapes, lists, dicts, as keys, values, processes and
meta): the same rows with the same Python types, or the DuckDB path steps aside (NotHere)
and the orjson reader decides. What DuckDB's parser accepts and JSON refuses (a trailing
comma, NaN, a duplicate key, ...) is never read by it: such a file gets the orjson reader's
answer, a named bad line included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.checkers.linearizable.checker import ALL_FS
from chaos.history import duck
from chaos.history.model import COLUMNS
from chaos.history.stream import Doubt, Split, split_history
from tests.strategies import register_histories, set_histories

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not duck.available(), reason="duckdb/pyarrow not installed")


def _tagged(v: Any) -> Any:
    """A value with its exact types spelt out (1, 1.0 and true differ; an int64 array is
    told from a list)."""
    if isinstance(v, np.ndarray):
        return ["ndarray", [_tagged(x) for x in v.tolist()]]
    if isinstance(v, list):
        return ["list", [_tagged(x) for x in v]]
    if isinstance(v, dict):
        return ["dict", sorted((k, _tagged(x)) for k, x in v.items())]
    if isinstance(v, np.generic):
        return [type(v).__name__, v.item()]
    return [type(v).__name__, v]


def _read(path: Path, tmp: Path, reader: str, monkeypatch: Any) -> Any:
    """Every row of the split (shards and context) in invoke order, tagged; and what the
    split says of itself. "Doubt" when the streaming reader refuses the history."""
    monkeypatch.setenv("CHAOS_HISTORY_READER", reader)
    try:
        split = split_history(path, tmp, n_shards=3, cuttable=ALL_FS,
                              workers=None if reader == "duckdb" else 1)
    except Doubt:
        return "Doubt", None
    return _rows(split), split.reader


def _rows(split: Split) -> Any:
    frames = [split.shard(i).pairs for i in range(split.n_shards) if split.shard_rows[i]]
    frames.append(split.context_history().pairs)
    rows = [r for fr in frames for r in fr.to_dict("records")]
    rows.sort(key=lambda r: r["invoke_index"])
    tagged = [[_tagged(r[c]) for c in COLUMNS] for r in rows]
    return (tagged, split.lines, split.ops, split.warnings, split.cut_keys, split.observed,
            split.failed_cas, split.end_time, split.client_fs)


def _same(lines: list[bytes], tmp: Path, monkeypatch: Any) -> str:
    """Both readers on the file of `lines`; asserts they agree, returns who read it."""
    path = tmp / "h.jsonl"
    path.write_bytes(b"".join(lines))
    got, reader = _read(path, tmp / "duck", "duckdb", monkeypatch)
    want, _ = _read(path, tmp / "orjson", "orjson", monkeypatch)
    assert got == want
    return reader or "Doubt"


def _jsonl(ops: list[dict[str, Any]], spaced: bool = False) -> list[bytes]:
    """The lines as our recorder writes them (compact), or with json's default spacing and
    non-ASCII kept (`spaced`); json, not orjson: it writes ints beyond 64 bits."""
    seps = (", ", ": ") if spaced else (",", ":")
    return [json.dumps(op, separators=seps, ensure_ascii=not spaced).encode() + b"\n"
            for op in ops]


STORED = sorted((ROOT / "histories").glob("*.jsonl")) + sorted(
    (ROOT / "histories" / "bad").glob("*.jsonl"))


@pytest.mark.parametrize("path", STORED, ids=[p.name for p in STORED])
def test_stored_histories_read_the_same(tmp_path: Path, monkeypatch: Any, path: Path) -> None:
    who = _same([path.read_bytes()], tmp_path, monkeypatch)
    if path.name == "crash-truncated.jsonl":
        assert who == "orjson"  # no newline at the end: the orjson reader's warning
    elif path.parent.name != "bad" and path.read_bytes().strip():
        assert who == "duckdb", path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(gen=st.one_of(set_histories(rotate=True, max_ops=40), register_histories(max_ops=40)))
def test_generated_histories_read_the_same(tmp_path_factory: Any, monkeypatch: Any,
                                           gen: Any) -> None:
    tmp = tmp_path_factory.mktemp("gen")
    assert _same(_jsonl(gen.ops), tmp, monkeypatch) == "duckdb"


_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**63), 2**63 - 1), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.sampled_from(["", "a\"b", "\\", "é", "\u2028", "💥", "1", "true"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8)
_INT_LISTS = st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5)


@st.composite
def odd_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Well-formed histories (each process alternates invoke and completion, index and time
    increase) whose keys, values, processes and optional fields take any JSON shape."""
    ops: list[dict[str, Any]] = []
    open_: dict[Any, dict[str, Any]] = {}
    procs = draw(st.lists(st.one_of(st.integers(0, 5), st.sampled_from(["nemesis", "m", "7"])),
                          min_size=1, max_size=4, unique=True))
    for i in range(draw(st.integers(1, 24))):
        p = draw(st.sampled_from(procs))
        op: dict[str, Any] = {"process": p, "index": i, "time": i * 3}
        if p in open_:
            inv = open_.pop(p)
            op.update(type=draw(st.sampled_from(["ok", "ok", "fail", "info"])), f=inv["f"])
        else:
            op.update(type="invoke", f=draw(st.sampled_from(["read-set", "add", "read", "cas",
                                                             "write", "status", 5])))
            open_[p] = op
        if op["f"] == "read-set" and op["type"] != "invoke":
            op["value"] = draw(st.one_of(_INT_LISTS, _VALUES))
        elif draw(st.booleans()):
            op["value"] = draw(_VALUES)
        for name in ("key", "node", "meta", "error", "final"):
            if draw(st.integers(0, 2)) == 0:
                op[name] = draw(_VALUES if name != "final" else st.one_of(st.booleans(),
                                                                          _SCALARS))
        ops.append(op)
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(ops=odd_histories(), spaced=st.booleans())
def test_any_json_shape_reads_the_same(tmp_path_factory: Any, monkeypatch: Any,
                                       ops: list[dict[str, Any]], spaced: bool) -> None:
    _same(_jsonl(ops, spaced), tmp_path_factory.mktemp("odd"), monkeypatch)


def test_read_set_lists_are_int64_only_where_exact(tmp_path: Path, monkeypatch: Any) -> None:
    """DuckDB's cast would make 1.5 a 2, "1" a 1, true a 1 and overflow a null: those lists
    come from their text (as orjson reads them), the plain ones as one int64 buffer."""
    lists = [[1, 2, 3], [1.5], ["1"], [True], [2**63], [-(2**63)], [], [0, -0, 7], [1.0]]
    ops: list[dict[str, Any]] = []
    for k, v in enumerate(lists):
        ops.append({"process": 1, "type": "invoke", "f": "read-set", "key": "s",
                    "index": 2 * k, "time": 2 * k})
        ops.append({"process": 1, "type": "ok", "f": "read-set", "key": "s", "value": v,
                    "index": 2 * k + 1, "time": 2 * k + 1})
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(_jsonl(ops)))
    monkeypatch.setenv("CHAOS_HISTORY_READER", "duckdb")
    split = split_history(path, tmp_path / "d", n_shards=1)
    assert split.reader == "duckdb"
    got = [_tagged(v) for v in split.shard(0).pairs["result"].tolist()]
    assert got[0] == ["ndarray", [["int", 1], ["int", 2], ["int", 3]]]
    assert got[1] == ["list", [["float", 1.5]]]
    assert got[2] == ["list", [["str", "1"]]]
    assert got[6] == ["list", []]
    assert got[8] == ["list", [["float", 1.0]]]
    assert _same(_jsonl(ops), tmp_path, monkeypatch) == "duckdb"


_OK = (b'{"process":0,"type":"invoke","f":"add","key":"s","value":1,"index":0,"time":0}\n'
       b'{"process":0,"type":"ok","f":"add","key":"s","value":1,"index":1,"time":1}\n')
_LAX = {
    "trailing comma": b'{"process":0,"type":"invoke","f":"add","index":2,"time":2,}\n',
    "trailing comma before a space": b'{"process":0,"type":"invoke","f":"add",'
                                     b'"index":2,"time":2, }\n',
    "trailing comma in a list": b'{"process":0,"type":"invoke","f":"add","value":[1,],'
                                b'"index":2,"time":2}\n',
    "trailing comma before a carriage return": b'{"process":0,"type":"invoke","f":"add",'
                                               b'"index":2,"time":2,\r}\n',
    "NaN in a field chaos does not read": b'{"process":0,"type":"invoke","f":"add",'
                                          b'"x":NaN,"index":2,"time":2}\n',
    "Infinity": b'{"process":0,"type":"invoke","f":"add","value":-Infinity,"index":2,'
                b'"time":2}\n',
    "duplicate key": b'{"process":0,"type":"invoke","f":"add","f":"read","index":2,'
                     b'"time":2}\n',
    "not an object": b'[1, 2]\n',
    "float index": b'{"process":0,"type":"invoke","f":"add","index":2.0,"time":2}\n',
    "string time": b'{"process":0,"type":"invoke","f":"add","index":2,"time":"2"}\n',
    "carriage returns between lines": b'{"process":0,"type":"invoke","f":"add","index":2,'
                                      b'"time":2}\r{"process":0,"type":"ok","f":"add",'
                                      b'"index":3,"time":3}\n',
    "junk after a control byte": b'{"process":0,"type":"invoke","f":"add","index":2,'
                                 b'"time":2}\x01 x\n',
    "unknown type": b'{"process":0,"type":"done","f":"add","index":2,"time":2}\n',
    "lower-case nan": b'{"process":0,"type":"invoke","f":"add","x":nan,"index":2,"time":2}\n',
    "inf": b'{"process":0,"type":"invoke","f":"add","x":[-inf],"index":2,"time":2}\n',
    "a number beyond a double": b'{"process":0,"type":"invoke","f":"add","x":1e999,'
                                b'"index":2,"time":2}\n',
    "trailing comma and a space before a carriage return": b'{"process":0,"type":"invoke",'
                                                          b'"f":"add","x":[1, \r],"index":2,'
                                                          b'"time":2}\n',
    "nesting deeper than orjson's": b'{"process":0,"type":"invoke","f":"add","x":'
                                    + b"[" * 1100 + b"]" * 1100 + b',"index":2,"time":2}\n',
    "a form feed": b'{"process":0,"type":"invoke","f":"add","index":2,"time":2}\x0c\n',
    "a vertical tab": b'\x0b{"process":0,"type":"invoke","f":"add","index":2,"time":2}\n',
}


@pytest.mark.parametrize("name", list(_LAX))
def test_what_json_refuses_is_left_to_orjson(tmp_path: Path, monkeypatch: Any,
                                             name: str) -> None:
    assert _same([_OK, _LAX[name]], tmp_path, monkeypatch) in ("orjson", "Doubt")
    bom = tmp_path / "bom"
    bom.mkdir()
    assert _same([b"\xef\xbb\xbf" + _OK], bom, monkeypatch) == "orjson"


@pytest.mark.integration  # a chaos subprocess
def test_a_lax_line_is_named_by_analyze(tmp_path: Path) -> None:
    """End to end: forced onto DuckDB's reader, a trailing comma is still a bad line, named
    by file and line, exit 4 (bad input), as without DuckDB."""
    path = tmp_path / "h.jsonl"
    path.write_bytes(_OK + _LAX["trailing comma"])
    env = {**os.environ, "CHAOS_HISTORY_READER": "duckdb", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "chaos", "analyze", "--no-results", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"{path}:3" in proc.stderr, proc.stderr


def test_reader_choice_is_checked(tmp_path: Path, monkeypatch: Any) -> None:
    from chaos.errors import BadInput
    path = tmp_path / "h.jsonl"
    path.write_bytes(_OK)
    monkeypatch.setenv("CHAOS_HISTORY_READER", "simdjson")
    with pytest.raises(BadInput, match="CHAOS_HISTORY_READER"):
        split_history(path, tmp_path / "d")


def test_no_thread_left_when_the_reader_steps_aside(tmp_path: Path) -> None:
    """A refusal in the middle of the file (a bad type after many good lines) stops the
    fetching thread and the scan: nothing of DuckDB's is left running."""
    ops = [{"process": k % 4, "type": "invoke" if k % 8 < 4 else "ok", "f": "add", "key": "s",
            "value": k, "index": k, "time": k} for k in range(200_000)]
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(_jsonl(ops)) + b'{"process":9,"type":"oops","f":"add",'
                     b'"index":999999,"time":999999}\n')
    with pytest.raises(duck.NotHere):
        for batch in duck.batches(path):
            duck.to_columns(batch, {}, {})
    assert not [t for t in threading.enumerate() if t.name.startswith("chaos-duck")]


def test_context_rows_are_copies_not_views_of_a_block(tmp_path: Path, monkeypatch: Any) -> None:
    """The non-client rows kept in memory must not be views of a block's arrays: a view
    keeps the whole block (every row, its values, DuckDB's buffers) alive, and memory then
    grows with the history (it did: 3.3 GB for 10M lines)."""
    ops: list[dict[str, Any]] = []
    for k in range(300):
        p = "monitor" if k % 3 == 0 else k % 3
        ops.append({"process": p, "type": "invoke", "f": "add", "key": "s", "value": k,
                    "index": 2 * k, "time": 2 * k})
        ops.append({"process": p, "type": "ok", "f": "add", "key": "s", "value": k,
                    "index": 2 * k + 1, "time": 2 * k + 1})
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(_jsonl(ops)))
    for reader in ("duckdb", "orjson"):
        monkeypatch.setenv("CHAOS_HISTORY_READER", reader)
        split = split_history(path, tmp_path / reader, n_shards=2,
                              workers=None if reader == "duckdb" else 1)
        arrays = [a for parts in split.context.values() for a in parts]
        assert arrays and sum(map(len, split.context["process"])) == 100
        assert all(a.base is None for a in arrays), reader


# The scan that was in chaos.history.duck before `lenient_scan`, over DuckDB's read_csv of
# the lines (cut at \n and \r): the new scan must flag every line it flagged.
_OLD_LENIENT_SQL = r"""contains(l, ',}') OR contains(l, ',]') OR contains(l, 'NaN')
    OR contains(l, 'Infinity') OR suffix(l, ',')
    OR ((contains(l, ', ') OR contains(l, ',' || chr(9)))
        AND regexp_matches(l, ',\s+[\]}]'))"""


@pytest.fixture(scope="module")
def con() -> Any:
    c = duck._connect(1, None)
    yield c
    c.close()


def _old_flags(con: Any, path: Path) -> bool:
    return bool(con.sql(f"""
        SELECT count(*) FILTER (WHERE {_OLD_LENIENT_SQL})
        FROM read_csv({duck._literal(path)}, columns = {{'l': 'VARCHAR'}}, delim = chr(1),
                      quote = '', escape = '', header = false, auto_detect = false,
                      strict_mode = false)""").fetchall()[0][0])


def _duck_accepts(con: Any, path: Path) -> bool:
    """DuckDB's read of the history (the query of the fast path) takes the file."""
    try:
        con.sql(duck._query(path)).fetchall()
    except Exception:  # noqa: BLE001 - any refusal
        return False
    return True


def _json_refuses(line: bytes) -> bool:
    """The orjson reader refuses the line (a blank one it skips)."""
    if not line.strip():
        return False
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return True
    return False


_HEAD = b'{"process":0,"type":"invoke","f":"add","index":2,"time":2,"x":'
#: (what follows `_HEAD`, DuckDB takes it and JSON does not): every form the scan is for
_LENIENT_CASES = [
    (b'1,}\n', True), (b'[1,]}\n', True), (b'1, }\n', True), (b'[1,\t]}\n', True),
    (b'[1,  ]}\n', True), (b'{"a":1 ,\t}}\n', True), (b'[1, \r]}\n', True),
    (b'[1,\r]}\n', True), (b'[1,\t\r ]}\n', True), (b'1,\n', False),
    (b'1,\r"y":2}\n', False),  # a comma before a carriage return, then more: JSON, flagged
    (b'1,\r}\n', True),
    (b'NaN}\n', True), (b'-NaN}\n', True), (b'nan}\n', True), (b'NAN}\n', True),
    (b'Infinity}\n', True), (b'-Infinity}\n', True), (b'inf}\n', True), (b'-inf}\n', True),
    (b'Inf}\n', True), (b'INF}\n', True), (b'infinity}\n', True), (b'iNfInItY}\n', True),
    (b'[1, nan]}\n', True), (b'{"a": -Inf }}\n', True), (b'[\tinf,1]}\n', True),
    (b'\rnan\r}\n', True), (b'"NaN"}\n', False), (b'"Infinity"}\n', False),
    (b'1e999}\n', True), (b'-1E+400}\n', True), (b'[17976931348623159e292]}\n', True),
    (b'1' + b'0' * 400 + b'}\n', True), (b'-' + b'9' * 320 + b'.5}\n', True),
    (b'1.7976931348623159e308}\n', True),
    (b'[' * 1030 + b']' * 1030 + b'}\n', True),
    (b'{"a":' * 1030 + b'1' + b'}' * 1031 + b'\n', True),
    (b'1}\x0c\n', True), (b'1}\x0b\n', True),
]


@pytest.mark.parametrize("tail,lax", _LENIENT_CASES)
def test_lenient_scan_flags_each_form(tmp_path: Path, con: Any, tail: bytes, lax: bool) -> None:
    path = tmp_path / "h.jsonl"
    line = _HEAD + tail
    path.write_bytes(_OK + line + _OK)
    assert duck.lenient_scan(path) is True
    if lax:  # the case is one DuckDB takes and JSON refuses (else it tests nothing new)
        assert _duck_accepts(con, path) and _json_refuses(line)


#: lines of our recorder's shapes (and strings that hold the patterns' letters): not flagged,
#: or every such history would go to the slow path
_PLAIN = [
    b'{"process":"monitor","type":"invoke","f":"status","value":null,"node":"n1","index":0,'
    b'"time":37611}\n',
    b'{"process":3,"type":"info","f":"cas","key":"k1","value":[1,2],"error":"net: info, '
    b'Infinite retry: nano, [INFO] ok ] -nanosecond","index":5,"time":1700000000000000000}\n',
    b'{"process":1,"type":"ok","f":"read-set","value":[' + b",".join(
        str(i).encode() for i in range(5000)) + b'],"index":7,"time":8}\n',
    b'{"process":1,"type":"ok","f":"read","value":[1.5e10,-2E+99,3e-300,[[{"a":[]}]]],'
    b'"index":7,"time":8}\n',
]


def test_lenient_scan_leaves_plain_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(_PLAIN) * 3)
    assert duck.lenient_scan(path) is False


@pytest.mark.parametrize("chunk", [400, 401, 1000, 4096])
def test_lenient_scan_in_small_pieces(tmp_path: Path, chunk: int) -> None:
    """Pieces cut at line ends: a line is never split, wherever a piece ends; a line
    longer than a piece gives up (str, not False)."""
    lines = [_OK] * 40
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(lines))
    assert duck.lenient_scan(path, chunk=chunk) is False
    for at in (0, 7, 39):
        for tail in (b'[1, \r]}\n', b'nan}\n', b'1,\n'):
            bad = lines[:at] + [_HEAD + tail] + lines[at:]
            path.write_bytes(b"".join(bad))
            assert duck.lenient_scan(path, chunk=chunk) is True, (at, tail)
            path.write_bytes(b"".join(bad)[:-1])  # no newline at the end
            assert duck.lenient_scan(path, chunk=chunk) is True, (at, tail)
    path.write_bytes(_OK + _HEAD + b'"' + b"a" * chunk + b'"}\n')
    assert isinstance(duck.lenient_scan(path, chunk=chunk), str)
    path.write_bytes(b"")
    assert duck.lenient_scan(path, chunk=chunk) is False


_WS = st.sampled_from(["", " ", "\t", "  ", "\r", " \r", "\r ", "\t\r\t"])
_ODD = st.sampled_from(["NaN", "-NaN", "nan", "NAN", "Infinity", "-Infinity", "inf", "-inf",
                        "Inf", "iNfinity", "1e999", "-1E+400", "1" + "0" * 320])
_SNIPPETS = st.one_of(_ODD, _WS, st.sampled_from([",", ", ", ",\t", ",\r", "]", "}", "[",
                                                   "\x0c", "\x0b", "\r", "e", "E5", "i", "n"]))


@st.composite
def lax_lines(draw: st.DrawFn) -> bytes:
    """A JSON object line (compact or spaced), then a few defects: a comma (and whitespace)
    before a random ] or }, an odd number in place of a random value (a placeholder number,
    also inside strings), a snippet anywhere."""
    obj = draw(st.dictionaries(st.text(max_size=3), st.one_of(
        _VALUES, st.just(-12345), st.just("x-12345y"), st.lists(st.just(-12345), max_size=3)),
        max_size=4))
    seps = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    text = json.dumps(obj, separators=seps, ensure_ascii=draw(st.booleans()))
    text = text.replace("-12345", draw(_ODD))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            closers = [i for i, c in enumerate(text) if c in "]}"]
            if closers:
                at = draw(st.sampled_from(closers))
                text = text[:at] + draw(_WS) + "," + draw(_WS) + text[at:]
        elif kind == 1:
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(_SNIPPETS) + text[at:]
        else:
            text = text + draw(_WS) + "," + draw(_WS)
    return text.encode() + b"\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(line=lax_lines())
def test_lenient_scan_misses_nothing(tmp_path_factory: Any, con: Any, line: bytes) -> None:
    """A line DuckDB takes and JSON refuses, or one the old scan flagged, is flagged."""
    path = tmp_path_factory.mktemp("lax") / "h.jsonl"
    path.write_bytes(line)
    new = duck.lenient_scan(path)
    assert new in (True, False)
    if _old_flags(con, path):
        assert new, "the old scan flagged it"
    if _duck_accepts(con, path) and _json_refuses(line):
        assert new, "DuckDB takes it, JSON does not"
