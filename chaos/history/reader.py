"""Read and validate a history.jsonl (DESIGN §4) into a `History`, pairing invokes once.

Speed (target >= 300k lines/s; ~400k measured): with the cyclic GC paused, the lines go
through orjson a chunk at a time and each chunk goes straight into `chaos.history.columnar`
while its dicts are still in the CPU cache; validation and pairing are then numpy over int
columns. Each chunk's lines are released once parsed, so the dicts reuse their memory
instead of faulting in fresh pages. Only when something is off does the per-op Python loop
(`build_history`) run, from the start, and it is the one that names the offending line.
Importers call `pair_ops` (the same two paths), so an imported history is held to the same
rules as our own.

Rules (each violation is `BadInput` with "file:line"):
  a line must be a JSON object; `type` in invoke/ok/fail/info; `process` and `f` present;
  `index` an int and unique (missing: its position); `time` an int, never decreasing in file
  order; a completion needs an open invoke by its process; a process may not invoke twice
  without completing. An invoke never completed becomes "info" (it may have happened).
A final line with no trailing newline that does not parse is a crash mid-write: it is
skipped with a warning in `History.warnings`, never silently.
"""
from __future__ import annotations

import os
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from chaos.errors import BadInput
from chaos.history.columnar import CHUNK, Columns, fast_build, pair_columns
from chaos.history.columnar import INT64_MIN as _INT64_MIN
from chaos.history.columnar import fast_build as _fast_build  # noqa: F401 - tests import it
from chaos.history.model import OPEN, History, gc_paused, make_pairs_frame

TYPES = frozenset(("invoke", "ok", "fail", "info"))
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
    with gc_paused():
        history = _parse(data, source, fast=True) or _parse(data, source, fast=False)
    assert history is not None  # the slow path always answers (or raises BadInput)
    return history


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
    cols = Columns(n)
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
    return pair_columns(cols, ops, source, warnings, True)


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
            if proc not in open_by_process:
                raise BadInput(f"{typ} completion of {f!r} by process {proc!r} "
                               "has no open invoke", where=loc(pos))
            row = open_by_process.pop(proc)
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


def pair_ops(ops: list[Any], source: str, *, warnings: list[str] | None = None,
             check_time: bool = True, linenos: Sequence[int] | None = None,
             where: Callable[[int], str] | None = None) -> History:
    """Validate and pair `ops`: the vectorised path when all is well, else `build_history`.

    Importers call this with their op dicts (arguments as for build_history).
    """
    fast = fast_build(ops, source, list(warnings or []), check_time=check_time)
    if fast is not None:
        return fast
    return build_history(ops, source, linenos=linenos, warnings=warnings,
                         check_time=check_time, where=where)


