"""The JSONL reader: pairing contract, the fast path agreeing with the slow one, bad input."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.errors import BadInput
from chaos.history.model import COLUMNS, OPEN, History
from chaos.history.reader import _fast_build, build_history, parse_jsonl, read_history, sniff
from chaos.history.writer import HistoryWriter

MS = 1_000_000


def op(i, t, p, typ, f, value=None, **kw):
    return {"index": i, "time": t, "process": p, "type": typ, "f": f, "value": value, **kw}


def write_lines(path: Path, ops, tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in ops) + tail)
    return path


def random_history(rnd: random.Random, n_ops: int, procs: int = 4) -> list[dict]:
    """A well-formed history: interleaved client processes, nemesis and monitor ops."""
    ops: list[dict] = []
    open_: dict = {}
    active = list(range(procs)) + ["nemesis", "monitor"]
    nxt = procs
    t = 0
    while len(ops) < n_ops:
        t += rnd.choice((0, 1, 1000))
        slot = rnd.randrange(len(active))
        p = active[slot]
        if p in open_:
            inv = open_.pop(p)
            typ = rnd.choice(("ok", "ok", "fail", "info"))
            c = dict(inv, index=len(ops), time=t, type=typ)
            c["value"] = rnd.choice((None, 1, [1, 2], {"role": "leader"}, "s"))
            if rnd.random() < 0.3:
                c["node"] = rnd.choice(("n1", "n2"))
            if rnd.random() < 0.2:
                c["meta"] = {"term": rnd.randint(1, 3)}
            if rnd.random() < 0.1:
                c["error"] = "timeout"
            if rnd.random() < 0.1:
                c["final"] = True
            ops.append(c)
            if typ == "info" and isinstance(p, int):
                active[slot] = nxt
                nxt += 1
        else:
            inv = op(len(ops), t, p, "invoke", rnd.choice(("read", "write", "cas", "add")),
                     rnd.choice((None, 3, [1, 2], [[1], 2])))
            if rnd.random() < 0.5:
                inv["key"] = rnd.choice(("a", 1, None))
            if rnd.random() < 0.3:
                inv["node"] = "n3"
            if rnd.random() < 0.05:
                inv["final"] = True
            open_[p] = inv
            ops.append(inv)
    return ops


# ---------------------------------------------------------------- valid histories

def test_pairs_contract(tmp_path):
    ops = [op(0, 0, 0, "invoke", "write", 1, key="k", node="n1"),
           op(1, 5, 1, "invoke", "read", key="k"),
           op(2, 10, 0, "ok", "write", 1, key="k", node="n2", meta={"term": 4}),
           op(3, 12, "nemesis", "invoke", "start-partition", {"partition": [["n1"], ["n2"]]}),
           op(4, 13, "nemesis", "ok", "start-partition", {"partition": [["n1"], ["n2"]]}),
           op(5, 20, 2, "invoke", "read-set", final=True),
           op(6, 21, 2, "ok", "read-set", [1, 2], final=True)]
    h = read_history(write_lines(tmp_path / "h.jsonl", ops))
    p = h.pairs
    assert list(p.columns) == COLUMNS
    assert len(p) == 4 and len(h.ops) == 7 and h.warnings == []
    w, r, nem, fin = (p.iloc[i] for i in range(4))
    assert (w["type"], w["result"], w["node"], w["meta"]) == ("ok", 1, "n2", {"term": 4})
    assert (w["invoke_time"], w["complete_time"], w["complete_index"]) == (0, 10, 2)
    assert r["type"] == "info" and r["complete_time"] == OPEN and r["complete_index"] == -1
    assert nem["process"] == "nemesis" and nem["value"] == {"partition": [["n1"], ["n2"]]}
    assert bool(fin["final"]) and fin["result"] == [1, 2] and fin["key"] is None
    for c in ("invoke_time", "complete_time", "invoke_index", "complete_index"):
        assert p[c].dtype == np.int64
    assert p["final"].dtype == bool
    for c in ("process", "f", "key", "value", "result", "type", "node", "meta", "error"):
        assert p[c].dtype == object, c


def test_writer_output_reads_back(tmp_path):
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as w:
        w.append({"time": 1, "process": 0, "type": "invoke", "f": "add", "value": 7})
        w.append({"time": 2, "process": 0, "type": "ok", "f": "add", "value": 7})
    h = read_history(tmp_path)  # a run directory
    assert h.source == str(path) and h.pairs.iloc[0]["result"] == 7


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_equals_slow_path_and_from_ops(seed):
    ops = random_history(random.Random(seed), 400)
    fast = _fast_build(ops, "x", [])
    assert fast is not None, "a well-formed history must take the fast path"
    slow = build_history(ops, "x")
    pd.testing.assert_frame_equal(fast.pairs, slow.pairs)
    pd.testing.assert_frame_equal(fast.pairs, History.from_ops(ops).pairs)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_fast_path_property(seed, n):
    ops = random_history(random.Random(seed), n)
    fast = _fast_build(ops, "x", [])
    assert fast is not None
    pd.testing.assert_frame_equal(fast.pairs, build_history(ops, "x").pairs)


def test_truncated_last_line_is_a_warning(tmp_path):
    ops = [op(0, 0, 0, "invoke", "write", 1), op(1, 1, 0, "ok", "write", 1)]
    path = write_lines(tmp_path / "h.jsonl", ops, tail=b'{"index": 2, "ti')
    h = read_history(path)
    assert len(h.pairs) == 1
    assert len(h.warnings) == 1 and f"{path}:3" in h.warnings[0] and "truncated" in h.warnings[0]


def test_last_line_without_newline_but_complete_is_kept(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(orjson.dumps(op(0, 0, 0, "invoke", "write", 1)) + b"\n"
                     + orjson.dumps(op(1, 1, 0, "ok", "write", 1)))
    h = read_history(path)
    assert h.warnings == [] and h.pairs.iloc[0]["type"] == "ok"


def test_blank_lines_tolerated_and_line_numbers_kept(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(orjson.dumps(op(0, 0, 0, "invoke", "write", 1)) + b"\n\n  \n"
                     + orjson.dumps(op(1, 1, 1, "ok", "write", 1)) + b"\n")
    with pytest.raises(BadInput) as ei:
        read_history(path)
    assert ei.value.where == f"{path}:4"


def test_sniff():
    assert sniff('  {"index": 0}') and sniff("{}\n")
    assert not sniff("{:type :invoke}") and not sniff("INFO  jepsen.util - 0") and not sniff("")


# ---------------------------------------------------------------- bad input

GOOD = [op(0, 0, 0, "invoke", "write", 1), op(1, 1, 0, "ok", "write", 1)]

BAD_CASES = {
    "bad json": (b'{"index": 2, "time": 2 "process": 0}\n', "bad JSON"),
    "not an object": (b"[1, 2]\n", "expected a JSON object, got list"),
    "missing type": (orjson.dumps({"index": 2, "time": 2, "process": 0, "f": "read"}) + b"\n",
                     "missing 'type'"),
    "unknown type": (orjson.dumps(op(2, 2, 0, "done", "read")) + b"\n", "unknown type 'done'"),
    "missing process": (orjson.dumps({"index": 2, "time": 2, "type": "invoke", "f": "read"})
                        + b"\n", "missing 'process'"),
    "missing f": (orjson.dumps({"index": 2, "time": 2, "type": "invoke", "process": 0}) + b"\n",
                  "missing 'f'"),
    "completion without invoke": (orjson.dumps(op(2, 2, 5, "ok", "read", 1)) + b"\n",
                                  "has no open invoke"),
    "second invoke": (orjson.dumps(op(2, 2, 0, "invoke", "read")) + b"\n"
                      + orjson.dumps(op(3, 3, 0, "invoke", "read")) + b"\n",
                      "invokes again while"),
    "duplicate index": (orjson.dumps(op(1, 2, 3, "invoke", "read")) + b"\n", "duplicate index 1"),
    "time backwards": (orjson.dumps(op(2, 0, 3, "invoke", "read")) + b"\n", "time goes backwards"),
    "string time": (orjson.dumps(op(2, "soon", 3, "invoke", "read")) + b"\n",
                    "'time' must be an integer"),
    "float index": (orjson.dumps(op(2.5, 2, 3, "invoke", "read")) + b"\n",
                    "'index' must be an int"),
    "f mismatch": (orjson.dumps(op(2, 2, 0, "invoke", "read")) + b"\n"
                   + orjson.dumps(op(3, 3, 0, "ok", "write")) + b"\n", "does not match"),
    "truncated line in the middle": (b'{"index": 2, "ti\n'
                                     + orjson.dumps(op(3, 3, 1, "invoke", "read")) + b"\n",
                                     "bad JSON"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_names_file_and_line(tmp_path, case):
    extra, needle = BAD_CASES[case]
    path = write_lines(tmp_path / "h.jsonl", GOOD, tail=extra)
    with pytest.raises(BadInput) as ei:
        read_history(path)
    bad_line = 4 if case in ("second invoke", "f mismatch") else 3
    assert ei.value.where == f"{path}:{bad_line}", str(ei.value)
    assert needle in str(ei.value)
    assert "\n" not in str(ei.value)


def test_valid_variant_of_each_rule_passes(tmp_path):
    """The same shapes as BAD_CASES, made legal, are accepted (the rules are not overbroad)."""
    extra = (orjson.dumps(op(2, 1, 0, "invoke", "read")) + b"\n"      # equal time is fine
             + orjson.dumps(op(3, 1, 0, "ok", "read", None)) + b"\n"
             + orjson.dumps(op(5, 2, 0, "invoke", "read")) + b"\n"    # gaps in index are fine
             + orjson.dumps(op(4, 3, "monitor", "invoke", "status")) + b"\n")
    h = read_history(write_lines(tmp_path / "h.jsonl", GOOD, tail=extra))
    assert len(h.pairs) == 4 and list(h.pairs["type"]) == ["ok", "ok", "info", "info"]


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="no such file") as ei:
        read_history(tmp_path / "nope.jsonl")
    assert ei.value.where == str(tmp_path / "nope.jsonl")


def test_empty_file_and_whitespace_file(tmp_path):
    for content in (b"", b"\n \n"):
        path = tmp_path / "h.jsonl"
        path.write_bytes(content)
        with pytest.raises(BadInput, match="history is empty"):
            read_history(path)


def test_directory_without_history(tmp_path):
    with pytest.raises(BadInput, match="no history.jsonl"):
        read_history(tmp_path)


def test_parse_jsonl_only_truncated_line_is_empty():
    with pytest.raises(BadInput, match="history is empty"):
        parse_jsonl(b'{"index": 0, "t', "x")


def test_out_of_range_numbers_and_bom(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", [op(0, 2**63 - 1, 0, "invoke", "read")])
    with pytest.raises(BadInput, match="'time' .* out of range") as ei:
        read_history(path)
    assert ei.value.where == f"{path}:1"
    path.write_bytes(b'{"index": 9223372036854775808, "time": 0, "process": 0, '
                     b'"type": "invoke", "f": "read"}\n')
    with pytest.raises(BadInput, match="'index' .* out of range"):
        read_history(path)
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(op(0, 0, 0, "invoke", "read")) + b"\r\n")
    assert len(read_history(path).pairs) == 1 and sniff(path.read_bytes().decode())


def test_long_whitespace_line_is_blank_too(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(orjson.dumps(op(0, 0, 0, "invoke", "write", 1)) + b"\n      \t \n"
                     + orjson.dumps(op(1, 1, 0, "ok", "write", 1)) + b"\n"
                     + orjson.dumps(op(2, 2, 0, "ok", "write", 1)) + b"\n")
    with pytest.raises(BadInput) as ei:
        read_history(path)
    assert ei.value.where == f"{path}:4" and "no open invoke" in str(ei.value)


def test_short_and_long_blank_lines_together(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\n" + orjson.dumps(op(0, 0, 0, "invoke", "write", 1)) + b"\n     \n"
                     + orjson.dumps(op(1, 1, 0, "ok", "write", 1)) + b"\n"
                     + orjson.dumps(op(2, 2, 0, "ok", "write", 1)) + b"\n")
    with pytest.raises(BadInput) as ei:
        read_history(path)
    assert ei.value.where == f"{path}:5"


@pytest.mark.parametrize("line2, message", [
    (b'{"index":1,"time":2,"process":0,"type":"ok","f":null}', "f"),
    (b'{"index":1,"time":2,"process":0,"type":["ok"],"f":"read"}', "type"),
])
def test_odd_field_values_get_a_line_number_not_a_crash(tmp_path, line2, message):
    """Regressions: a null `f` once slipped onto the fast path; a list `type` crashed the slow
    one."""
    p = tmp_path / "h.jsonl"
    p.write_bytes(b'{"index":0,"time":1,"process":0,"type":"invoke","f":"read"}\n' + line2 + b"\n")
    with pytest.raises(BadInput) as err:
        read_history(p)
    assert f"{p}:2" in str(err.value) and message in str(err.value)
