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

import gc
import os
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import orjson
import pandas as pd

from chaos.errors import BadInput
from chaos.history.model import COLUMNS, OPEN, History, Op, make_pairs_frame

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
    warnings: list[str] = []
    if data.startswith(BOM):  # some editors add one; it is not JSON
        data = data[len(BOM):]
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
    # A million small dicts make the cyclic GC rescan everything again and again; nothing
    # here creates cycles, so pause it (this alone halves the parse time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            ops = _loads_lines(lines, linenos, source)
        except _BlankLine:
            lines, linenos = _drop_blank(lines, linenos)
            ops = _loads_lines(lines, linenos, source)
        del lines
        return pair_ops(ops, source, warnings=warnings, linenos=linenos)
    finally:
        if gc_was_enabled:
            gc.enable()


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
        if typ not in types:
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


REQUIRED = ("type", "process", "f", "index", "time")
OPTIONAL = ("key", "value", "node", "meta", "error", "final")


def _table(ops: list[Any]) -> dict[str, np.ndarray] | None:
    """Columns REQUIRED + OPTIONAL of `ops` as object arrays (missing -> None).

    pandas' `dicts_to_array` reads every op dict once for all the columns; the dicts are
    scattered over a large heap, so one visit instead of one per column is about twice as
    fast. JSON has no NaN, so its NaN marks a missing key; a missing required field, or an
    op that is not a dict, sends the history to the slow path (None).
    """
    if set(map(type, ops)) != {dict}:
        return None
    names = [*REQUIRED, *OPTIONAL]
    try:
        from pandas._libs.lib import dicts_to_array  # private, present in pandas 1.x-3.x
        arr = dicts_to_array(ops, names)
    except (ImportError, AttributeError, TypeError, ValueError):  # API moved: the slow way
        arr = np.empty((len(ops), len(names)), dtype=object)
        for j, name in enumerate(names):
            arr[:, j] = np.fromiter(map(dict.get, ops, repeat(name)), dtype=object,
                                    count=len(ops))
    cols = {name: arr[:, j] for j, name in enumerate(names)}
    # Required fields: a missing one (NaN) fails the type checks of _fast_build, except
    # for f, which may be of any type but must be there.
    if pd.isna(cols["f"]).any():
        return None
    for name in OPTIONAL:
        if name == "final":
            continue  # only `is True` matters there; NaN is not True
        col = cols[name]
        missing = pd.isna(col)
        if missing.any():
            col[missing] = None
    return cols


def _with_sentinel(col: np.ndarray, sentinel: Any = None) -> np.ndarray:
    out = np.empty(len(col) + 1, dtype=object)
    out[:-1] = col
    out[-1] = sentinel
    return out


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
    n = len(ops)
    table = _table(ops)
    if table is None:
        return None
    typ, proc, idx, tim = (table[name].tolist() for name in ("type", "process", "index", "time"))
    if not set(typ) <= TYPES:
        return None
    if not set(map(type, proc)) <= {int, str}:
        return None
    if set(map(type, idx)) != {int} or set(map(type, tim)) != {int}:
        return None
    try:
        index = np.array(idx, dtype=np.int64)
        times = np.array(tim, dtype=np.int64)
    except OverflowError:
        return None
    if n and (index.max() == OPEN or times.max() == OPEN
              or index.min() == _INT64_MIN or times.min() == _INT64_MIN):
        return None
    if check_time and n > 1 and np.any(np.diff(times) < 0):
        return None
    if n > 1 and not np.all(np.diff(index) > 0) and np.unique(index).size != n:
        return None
    is_inv = table["type"] == "invoke"
    codes, _ = pd.factorize(table["process"])
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
    comp_of = np.full(n, n, dtype=np.int64)  # n = the sentinel slot: never completed
    sel = is_inv[order] & has_next
    comp_of[order[sel]] = order[np.nonzero(sel)[0] + 1]
    inv = np.nonzero(is_inv)[0]
    comp = comp_of[inv]
    done = comp < n
    f_arr = _with_sentinel(table["f"])
    if not np.array_equal(f_arr[inv][done], f_arr[comp[done]]):
        return None  # a completion of another f than its invoke
    key, value, node, meta, error, final_raw = (
        _with_sentinel(table[name]) for name in OPTIONAL)
    final = final_raw == True  # noqa: E712 - elementwise; 1 and 1.0 also compare equal, so:
    for i in np.nonzero(final)[0]:
        final[i] = final_raw[i] is True
    node_c = node[comp]
    node_c = np.where(pd.isna(node_c), node[inv], node_c)
    data: dict[str, Any] = {
        "process": table["process"][inv], "f": f_arr[inv], "key": key[inv],
        "value": value[inv], "result": value[comp],
        "type": _with_sentinel(table["type"], "info")[comp],
        "invoke_time": times[inv],
        "complete_time": np.where(done, times[np.minimum(comp, n - 1)], OPEN),
        "invoke_index": index[inv],
        "complete_index": np.where(done, index[np.minimum(comp, n - 1)], -1),
        "node": node_c, "meta": meta[comp], "final": final[inv] | final[comp],
        "error": error[comp],
    }
    for name in COLUMNS:
        if data[name].dtype == object:
            data[name] = pd.Series(data[name], dtype=object)
    return History(ops=ops, pairs=pd.DataFrame(data, columns=COLUMNS), source=source,
                   warnings=list(warnings))
