"""Read and validate a history.jsonl (DESIGN §4) into a `History`, pairing invokes once.

Speed (target >= 300k lines/s): lines go through orjson in one C-level map with the cyclic GC
paused; validation and pairing are then vectorised over columns (`_fast_build`, numpy).
Only when something is wrong does the per-op Python loop (`build_history`) run, and it is
the one that names the offending line. Importers call `pair_ops` (the same two paths), so an
imported history is held to the same rules as our own.

Rules (each violation is `BadInput` with "file:line"):
  a line must be a JSON object; `type` in invoke/ok/fail/info; `process` and `f` present;
  `index` an int and unique (missing: its position); `time` an int, never decreasing in file
  order; a completion needs an open invoke by its process; a process may not invoke twice
  without completing. An invoke never completed becomes "info" (it may have happened).
A final line with no trailing newline that does not parse is a crash mid-write: it is
skipped with a warning in `History.warnings`, never silently.
"""
from __future__ import annotations

import ctypes
import gc
import os
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import orjson
import pandas as pd

from chaos.errors import BadInput
from chaos.history.model import OPEN, History, frame_from_columns, make_pairs_frame

TYPES = frozenset(("invoke", "ok", "fail", "info"))
_INT64_MIN = -(2**63)
BOM = b"\xef\xbb\xbf"
COMPLETIONS = frozenset(("ok", "fail", "info"))


def resolve_history_path(path: str | os.PathLike[str]) -> Path:
    """A history file, or a run directory holding history.jsonl. Missing -> BadInput."""
    p = Path(path)
    if p.is_dir():
        inner = p / "history.jsonl"
        if not inner.is_file():
            raise BadInput("directory has no history.jsonl", where=str(p))
        return inner
    if not p.exists():
        raise BadInput("no such file", where=str(p))
    if not p.is_file():
        raise BadInput("not a regular file", where=str(p))
    return p


def sniff(head: str) -> bool:
    """True when `head` (the file's first bytes) opens like our JSONL: `{"` or `{}`."""
    s = head.lstrip("\ufeff \t\r\n")
    return s.startswith("{") and s[1:].lstrip()[:1] in ('"', "}")


def read_history(path: str | os.PathLike[str]) -> History:
    """Parse and validate our JSONL history at `path` (a file or a run directory)."""
    p = resolve_history_path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", where=str(p)) from exc
    return parse_jsonl(data, str(p))


def parse_jsonl(data: bytes, source: str) -> History:
    """Parse JSONL bytes (see module doc); `source` names the file in errors."""
    if data.startswith(BOM):  # some editors add one; it is not JSON
        data = data[len(BOM):]
    # A million small dicts make the cyclic GC rescan everything again and again; nothing
    # here creates cycles, so pause it (this alone halves the parse time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(data, source, fast=True) or _parse(data, source, fast=False)
    finally:
        if gc_was_enabled:
            gc.enable()


def _parse(data: bytes, source: str, fast: bool) -> History | None:
    """parse_jsonl; `fast`: the chunked columnar path, None if the history is not for it."""
    warnings: list[str] = []
    lines = data.split(b"\n")
    # lines[-1] is b"" when the file ends with a newline; otherwise it is the unterminated tail.
    tail = lines.pop()
    tail_lineno = len(lines) + 1
    linenos: list[int] | None = None
    # Blank lines are tolerated (keeping true line numbers). No op fits in 2 bytes, so a
    # C-level length scan finds candidates; a longer whitespace-only line is caught below,
    # when it fails to parse.
    if lines and min(map(len, lines)) < 3:
        lines, linenos = _drop_blank(lines)
    if tail.strip():
        try:
            orjson.loads(tail)
        except orjson.JSONDecodeError:
            warnings.append(f"{source}:{tail_lineno}: truncated last line skipped "
                            "(no newline, not valid JSON: a crash mid-write?)")
        else:
            lines.append(tail)
            if linenos is not None:
                linenos.append(tail_lineno)
    if not lines:
        raise BadInput("history is empty", where=source)
    if fast:
        return _parse_fast(lines, source, warnings)
    try:
        ops = _loads_lines(lines, linenos, source)
    except _BlankLine:
        lines, linenos = _drop_blank(lines, linenos)
        ops = _loads_lines(lines, linenos, source)
    del lines
    return pair_ops(ops, source, warnings=warnings, linenos=linenos)


def _parse_fast(lines: list[bytes], source: str, warnings: list[str]) -> History | None:
    """Parse and build the columns one chunk at a time, while its dicts are in cache.

    Each chunk's lines are released once parsed, so the memory of the lines is reused for
    the dicts instead of fresh pages (page faults are a good part of the cost). Returns None
    when the history is not for the fast path: a bad line, or anything `_Columns` or `_pair`
    doubts; the caller then parses again on the slow path, which names the problem.
    """
    n = len(lines)
    cols = _Columns(n)
    ops: list[Any] = []
    loads = orjson.loads
    try:
        for k in range(0, n, CHUNK):
            chunk = list(map(loads, lines[k:k + CHUNK]))
            lines[k:k + CHUNK] = repeat(b"", len(chunk))
            ops += chunk
            if not cols.add(chunk):
                return None
    except orjson.JSONDecodeError:
        return None
    return _pair(cols, ops, source, warnings, True)


class _BlankLine(Exception):
    """A whitespace-only line the quick length scan let through: filter and parse again."""


def _drop_blank(lines: list[bytes], linenos: list[int] | None = None
                ) -> tuple[list[bytes], list[int]]:
    """The non-blank lines and their 1-based file line numbers (`linenos`: already known)."""
    keep = [i for i, ln in enumerate(lines) if ln.strip()]
    return [lines[i] for i in keep], [linenos[i] if linenos else i + 1 for i in keep]


def _loads_lines(lines: list[bytes], linenos: list[int] | None, source: str) -> list[Any]:
    """Every line through orjson (a C-level map); on failure find and name the bad line.

    Measured: one orjson.loads per line beats one big `[a,b,...]` parse by ~20% here (the
    joined copy of the file and a single huge list cost more than the per-call overhead).
    """
    try:
        return list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        pass
    for i, ln in enumerate(lines):
        try:
            orjson.loads(ln)
        except orjson.JSONDecodeError as exc:
            if not ln.strip():
                raise _BlankLine from None
            lineno = linenos[i] if linenos else i + 1
            raise BadInput(f"bad JSON at column {exc.colno}: {exc.msg}",
                           where=f"{source}:{lineno}") from None
    raise AssertionError("unreachable: a line failed to parse, then parsed")


def _type_name(x: Any) -> str:
    return "null" if x is None else type(x).__name__


def build_history(ops: Sequence[Any], source: str, *, linenos: Sequence[int] | None = None,
                  warnings: list[str] | None = None, check_time: bool = True,
                  where: Callable[[int], str] | None = None) -> History:
    """Validate `ops` (file order) and pair them into a History (same contract as from_ops).

    `linenos[i]` is the file line of ops[i] (default i + 1); `where(i)` overrides how a
    location is named (importers of multi-line formats). `check_time=False` skips the
    monotonic-time rule for imported histories whose clocks were sampled per thread.
    Ops without "index" get their position; without "time", their index.
    """
    def loc(i: int) -> str:
        if where is not None:
            return where(i)
        return f"{source}:{linenos[i] if linenos else i + 1}"

    rows: list[list[Any]] = []
    open_by_process: dict[Any, list[Any]] = {}
    seen_index: set[int] = set()
    last_time: int | None = None
    last_time_pos = -1
    types = TYPES
    for pos, op in enumerate(ops):
        if type(op) is not dict:
            raise BadInput(f"expected a JSON object, got {_type_name(op)}", where=loc(pos))
        typ = op.get("type")
        if type(typ) is not str or typ not in types:  # a list would not even hash
            if typ is None:
                raise BadInput("missing 'type'", where=loc(pos))
            raise BadInput(f"unknown type {typ!r} (expected invoke, ok, fail or info)",
                           where=loc(pos))
        proc = op.get("process")
        if proc is None:
            raise BadInput("missing 'process'", where=loc(pos))
        if type(proc) is not int and type(proc) is not str:
            raise BadInput(f"'process' must be an int or a string, got {_type_name(proc)}",
                           where=loc(pos))
        f = op.get("f")
        if f is None:
            raise BadInput("missing 'f'", where=loc(pos))
        idx = op.get("index", pos)
        if type(idx) is not int:
            raise BadInput(f"'index' must be an int, got {_type_name(idx)}", where=loc(pos))
        if not _INT64_MIN < idx < OPEN:
            raise BadInput(f"'index' {idx} is out of range (64-bit)", where=loc(pos))
        if idx in seen_index:
            raise BadInput(f"duplicate index {idx}", where=loc(pos))
        seen_index.add(idx)
        t = op.get("time", idx)
        if type(t) is not int:
            if type(t) is float and t == t:
                t = int(t)
            else:
                raise BadInput(f"'time' must be an integer (ns), got {_type_name(t)}",
                               where=loc(pos))
        if not _INT64_MIN < t < OPEN:
            raise BadInput(f"'time' {t} is out of range (64-bit ns)", where=loc(pos))
        if check_time:
            if last_time is not None and t < last_time:
                raise BadInput(f"time goes backwards: {t} after {last_time} "
                               f"(at {loc(last_time_pos)})", where=loc(pos))
            last_time = t
            last_time_pos = pos
        if typ == "invoke":
            if proc in open_by_process:
                prev = open_by_process[proc]
                raise BadInput(f"process {proc!r} invokes again while its op at index "
                               f"{prev[8]} is still open", where=loc(pos))
            row = [proc, f, op.get("key"), op.get("value"), None, "info", t, OPEN, idx, -1,
                   op.get("node"), None, op.get("final") is True, None]
            open_by_process[proc] = row
            rows.append(row)
        else:
            row = open_by_process.pop(proc, None)
            if row is None:
                raise BadInput(f"{typ} completion of {f!r} by process {proc!r} "
                               "has no open invoke", where=loc(pos))
            if row[1] != f:
                raise BadInput(f"{typ} completion of {f!r} by process {proc!r} does not match "
                               f"its open invoke of {row[1]!r}", where=loc(pos))
            row[4] = op.get("value")
            row[5] = typ
            row[7] = t
            row[9] = idx
            node = op.get("node")
            if node is not None:
                row[10] = node
            row[11] = op.get("meta")
            if op.get("final") is True:
                row[12] = True
            row[13] = op.get("error")
    return History(ops=list(ops), pairs=make_pairs_frame(rows), source=source,
                   warnings=list(warnings or []))


NAMES = ["type", "process", "f", "index", "time", "key", "value", "node", "meta", "error",
         "final"]
_T, _P, _F, _I, _TM, _K, _V, _N, _M, _E, _FIN = range(len(NAMES))
CHUNK = 4096  # ops per chunk: their dicts and values stay in the CPU cache while we read them
_TYPE_CODE = {"invoke": 0, "ok": 1, "fail": 2, "info": 3}
_TYPE_NAMES = np.array(["invoke", "ok", "fail", "info"], dtype=object)


def _dicts_to_array(ops: list[Any], names: list[str]) -> np.ndarray:
    """pandas' C loop reading `names` of every dict once (missing -> its NaN object).

    Private in pandas but present from 1.x to 3.x; one visit per dict for all the columns is
    about twice as fast as one pass per column. Raises TypeError when an op is not a dict.
    """
    arr = np.empty((len(ops), len(names)), dtype=object)
    for j, name in enumerate(names):
        arr[:, j] = [op.get(name, _MISSING) if type(op) is dict else _not_dict()
                     for op in ops]
    return arr


def _not_dict() -> Any:
    raise TypeError("not a dict")


_MISSING: Any = float("nan")
try:  # the fast C loop, with the very NaN object it writes for a missing key
    from pandas._libs.lib import dicts_to_array as _d2a
    _MISSING = _d2a([{}], ["x"])[0, 0]
    _dicts_to_array = _d2a  # noqa: F811
except (ImportError, AttributeError, TypeError):  # pragma: no cover - pandas moved it
    pass
try:
    from pandas._libs.lib import is_integer_array as _is_int_array
except ImportError:  # pragma: no cover
    def _is_int_array(col: np.ndarray, skipna: bool = False) -> bool:
        return set(map(type, col.tolist())) == {int}


def _pointers(arr: np.ndarray) -> np.ndarray:
    """The object pointers of a C-contiguous object array, as intp (a view, no copy).

    Lets "is this slot the missing marker / None" be one vectorised identity test instead of
    a pass touching every object (pd.isna): `_pointers(a) == id(x)` is `a[i] is x`.
    """
    assert arr.dtype == object and arr.flags.c_contiguous
    buf = (ctypes.c_ssize_t * arr.size).from_address(arr.ctypes.data)
    return np.frombuffer(buf, dtype=np.intp).reshape(arr.shape)


class _Columns:
    """The columns of a history, filled chunk by chunk while each chunk's ops are hot.

    A million op dicts are scattered over a large heap; every pass over them costs a cache
    miss per object. So all per-object work (type checks, codes, missing -> None) happens per
    chunk right after the chunk is parsed; what is left for `_pair` is numpy over int arrays.
    `add` returns False as soon as the history is not for the fast path.
    """

    def __init__(self, n: int) -> None:
        self.n = 0
        self.obj = {name: np.empty(n, dtype=object)
                    for name in ("process", "f", "key", "value", "node", "meta", "error")}
        self.typ = np.empty(n, dtype=np.int8)
        self.index = np.empty(n, dtype=np.int64)
        self.time = np.empty(n, dtype=np.int64)
        self.pcode = np.empty(n, dtype=np.int64)
        self.fcode = np.empty(n, dtype=np.int64)
        self.final = np.zeros(n, dtype=bool)
        self.procs: dict[Any, int] = {}
        self.fs: dict[Any, int] = {}
        self.proc_types: set[type] = set()

    def add(self, ops: list[Any]) -> bool:
        """Take the next chunk of ops; False when the history is not for the fast path."""
        try:
            return self._add(ops)
        except TypeError:  # an op not a dict, an unhashable type, process or f
            return False

    def _add(self, ops: list[Any]) -> bool:
        a = self.n
        b = a + len(ops)
        self.n = b
        arr = _dicts_to_array(ops, NAMES)
        ptrs = _pointers(arr)
        missing = ptrs == id(_MISSING)
        tl = arr[:, _T].tolist()
        typ = np.fromiter(map(_TYPE_CODE.get, tl, repeat(-1)), dtype=np.int8, count=len(tl))
        if typ.min() < 0:
            return False
        self.typ[a:b] = typ
        for name, j in (("index", _I), ("time", _TM)):
            col = arr[:, j]
            if not _is_int_array(col, skipna=False):  # also False for bools and NaN
                return False
            try:
                getattr(self, name)[a:b] = col.astype(np.int64)
            except OverflowError:
                return False
        if missing[:, _F].any() or (ptrs[:, _F] == id(None)).any():
            return False  # no f, or "f": null (the slow path says "missing 'f'")
        for j, codes, known in ((_P, self.pcode, self.procs), (_F, self.fcode, self.fs)):
            col = arr[:, j]
            vals = col.tolist()
            for v in set(vals).difference(known):  # codes: first-seen order, per history
                known[v] = len(known)
            codes[a:b] = np.fromiter(map(known.__getitem__, vals), dtype=np.int64,
                                     count=len(vals))
            if j == _P:
                self.proc_types.update(map(type, vals))
            self.obj[NAMES[j]][a:b] = col
        for name, j in (("key", _K), ("value", _V), ("node", _N), ("meta", _M),
                        ("error", _E)):
            col = arr[:, j]
            m = missing[:, j]
            if m.any():
                col[m] = None
            self.obj[name][a:b] = col
        if not missing[:, _FIN].all():
            fin = arr[:, _FIN]
            self.final[a:b] = [x is True for x in fin.tolist()]
        return True


def pair_ops(ops: list[Any], source: str, *, warnings: list[str] | None = None,
             check_time: bool = True, linenos: Sequence[int] | None = None,
             where: Callable[[int], str] | None = None) -> History:
    """Validate and pair `ops`: the vectorised path when all is well, else `build_history`.

    Importers call this with their op dicts (arguments as for build_history).
    """
    fast = _fast_build(ops, source, list(warnings or []), check_time=check_time)
    if fast is not None:
        return fast
    return build_history(ops, source, linenos=linenos, warnings=warnings,
                         check_time=check_time, where=where)


def _fast_build(ops: list[Any], source: str, warnings: list[str],
                check_time: bool = True) -> History | None:
    """Vectorised validation and pairing for well-formed histories; None if anything is off.

    Produces exactly what `build_history` produces (tests compare the two), but with numpy
    over columns instead of a Python loop per op. It does not explain problems: on any doubt
    it returns None and the slow path, which names the offending line, takes over.
    """
    cols = _Columns(len(ops))
    for k in range(0, len(ops), CHUNK):
        if not cols.add(ops[k:k + CHUNK]):
            return None
    return _pair(cols, ops, source, warnings, check_time)


def _pair(c: _Columns, ops: list[Any], source: str, warnings: list[str],
          check_time: bool) -> History | None:
    """Validate the columns of `c` and pair invokes with completions (None: slow path)."""
    n = c.n
    if not n or not c.proc_types <= {int, str}:
        return None
    index, times = c.index, c.time
    if (index.max() == OPEN or times.max() == OPEN
            or index.min() == _INT64_MIN or times.min() == _INT64_MIN):
        return None
    if check_time and n > 1 and np.any(times[1:] < times[:-1]):
        return None
    if n > 1 and not np.all(index[1:] > index[:-1]) and np.unique(index).size != n:
        return None
    is_inv = c.typ == 0
    codes = c.pcode
    order = np.argsort(codes, kind="stable")
    cs = codes[order]
    pos = np.arange(n)
    start = np.zeros(n, dtype=bool)
    start[0] = True
    start[1:] = cs[1:] != cs[:-1]
    rank = pos - np.maximum.accumulate(np.where(start, pos, 0))
    if not np.array_equal(is_inv[order], rank % 2 == 0):
        return None  # a completion without an invoke, or a second invoke while one is open
    has_next = np.zeros(n, dtype=bool)
    has_next[:-1] = ~start[1:]
    comp_of = np.full(n, -1, dtype=np.int64)
    sel = is_inv[order] & has_next
    comp_of[order[sel]] = order[np.nonzero(sel)[0] + 1]
    inv = np.nonzero(is_inv)[0]
    comp = comp_of[inv]
    done = comp >= 0
    cd = comp[done]
    if not np.array_equal(c.fcode[inv[done]], c.fcode[cd]):
        return None  # a completion of another f than its invoke
    m = len(inv)
    obj = c.obj

    def completed(col: np.ndarray, default: Any = None) -> np.ndarray:
        out = np.full(m, default, dtype=object)
        out[done] = col[cd]
        return out

    node = completed(obj["node"])
    no_node = _pointers(node) == id(None)
    node[no_node] = obj["node"][inv[no_node]]
    complete_time = np.full(m, OPEN, dtype=np.int64)
    complete_time[done] = times[cd]
    complete_index = np.full(m, -1, dtype=np.int64)
    complete_index[done] = index[cd]
    final = c.final[inv]
    final[done] |= c.final[cd]
    ctype = np.full(m, 3, dtype=np.int8)
    ctype[done] = c.typ[cd]
    data: dict[str, Any] = {
        "process": obj["process"][inv], "f": obj["f"][inv], "key": obj["key"][inv],
        "value": obj["value"][inv], "result": completed(obj["value"]),
        "type": _TYPE_NAMES[ctype],
        "invoke_time": times[inv], "complete_time": complete_time,
        "invoke_index": index[inv], "complete_index": complete_index,
        "node": node, "meta": completed(obj["meta"]), "final": final,
        "error": completed(obj["error"]),
    }
    return History(ops=ops, pairs=frame_from_columns(data), source=source,
                   warnings=list(warnings))
