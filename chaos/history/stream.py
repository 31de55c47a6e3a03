"""Read a history.jsonl in bounded memory: parse, validate and pair it block by block, and
spill the paired operations to disk in shards by key.

A history can be far bigger than memory (an hour of load is tens of millions of lines). This
module reads it a block at a time (`BLOCK_LINES` lines), parses each block with the reader's
columnar machinery (`chaos.history.columnar.Columns`), checks the reader's rules and pairs
invokes with completions across blocks (only the invokes still open are carried from one
block to the next: at most one per process). Each completed operation is one row of the
pairs contract (chaos.history.model) and goes to a spill file:

- client operations (integer processes) to shard `hash(key) % n_shards`, so every op of a
  key lands in one shard: the per-key checkers (lost writes, stale reads, linearizability)
  judge a shard as they would the whole history;
- everything else (nemesis, monitor, controller: small, bounded by the run's length, not its
  load) to the context, kept in memory.

Anything the streaming rules doubt (a bad line, an index that does not increase, time going
backwards, an unmatched completion, ...) raises `Doubt`: the caller then reads the history
with `chaos.history.reader`, which names the file and line of the problem exactly as before,
or, for a valid but unusual history (indexes out of order), analyses it in memory. The
verdict never depends on which path read the history (tests compare them).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import orjson

from chaos.checkers._frame import hashable
from chaos.history.columnar import INT64_MIN, Columns
from chaos.history.model import COLUMNS, OPEN, History, frame_from_columns
from chaos.history.reader import BOM
from chaos.history.spill import dump_batch, load_batches, make_directory

BLOCK_LINES = 65536  # lines parsed at a time: ~10 MB of dicts, whatever the history's size
READ_BYTES = 8 << 20  # bytes read from the file at a time
_TYPE_NAMES = np.array(["invoke", "ok", "fail", "info"], dtype=object)
_INT_COLS = ("invoke_time", "complete_time", "invoke_index", "complete_index")


class Doubt(Exception):
    """The streaming reader cannot vouch for this history: read it with the in-memory reader."""


@dataclass
class Split:
    """A history read in shards: per-shard spill files, the context ops, and the counts."""

    source: str
    n_shards: int
    directory: Path
    lines: int = 0
    ops: int = 0
    warnings: list[str] = field(default_factory=list)
    context: dict[str, list[np.ndarray]] = field(default_factory=dict)
    shard_rows: list[int] = field(default_factory=list)
    end_time: int = 0  # the last line's time: the latest in the history (time never decreases)
    client_fs: set[Any] = field(default_factory=set)  # every f of a client op
    raw_lines: int = 0  # newline-terminated lines, blank ones too (for line numbers)
    truncated_at: int | None = None  # line number (in the range read) of a bad last line
    worker_rss: list[int] = field(default_factory=list)  # peak RSS (bytes) of each worker

    def shard(self, i: int) -> History:
        """Shard `i` as an in-memory History (its client ops only, ordered by invoke_index)."""
        parts: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        for path in sorted(self.directory.glob(f"shard-{i}.*.pickle")):
            with open(path, "rb") as fh:
                for batch in load_batches(fh):
                    for c in COLUMNS:
                        parts[c].append(batch[c])
        return _history(parts, self.source, self.warnings)

    def context_history(self, extra: list[dict[str, np.ndarray]] = ()) -> History:  # type: ignore[assignment]
        """The non-client ops (nemesis, monitor, controller), plus `extra` row batches."""
        parts = {c: list(self.context.get(c, [])) + [b[c] for b in extra] for c in COLUMNS}
        return _history(parts, self.source, self.warnings)


def _history(parts: dict[str, list[np.ndarray]], source: str, warnings: list[str]) -> History:
    cols: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if parts[c]:
            cols[c] = np.concatenate(parts[c])
        else:
            cols[c] = np.zeros(0, dtype=np.int64 if c in _INT_COLS else
                               bool if c == "final" else object)
    order = np.argsort(cols["invoke_index"], kind="stable")
    if len(order) and not np.all(order[1:] > order[:-1]):
        cols = {c: a[order] for c, a in cols.items()}
    return History(ops=[], pairs=frame_from_columns(cols), source=source,
                   warnings=list(warnings))


def _lines(path: Path, split: Split, start: int = 0,
           end: int | None = None) -> Iterator[list[bytes]]:
    """The non-blank lines of the file's bytes [start, end) in blocks; the unterminated last
    line of the file only if it parses (`start` and `end` are 0, the file's size or just
    after a newline: see chaos.history.ranges)."""
    rest = b""
    lineno = 0
    first = start == 0
    left = end - start if end is not None else -1
    with open(path, "rb") as fh:
        fh.seek(start)
        while True:
            if left == 0:
                break
            data = fh.read(READ_BYTES if left < 0 else min(READ_BYTES, left))
            left -= len(data) if left > 0 else 0
            if first:
                first = False
                if data.startswith(BOM):
                    data = data[len(BOM):]
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            rest = data[cut + 1:]
            lines = data[:cut].split(b"\n")
            lineno += len(lines)
            if min(map(len, lines)) < 3 or any(not ln.strip() for ln in lines if len(ln) < 64):
                lines = [ln for ln in lines if ln.strip()]
            for k in range(0, len(lines), BLOCK_LINES):
                yield lines[k:k + BLOCK_LINES]
    split.raw_lines = lineno
    if rest.strip():
        try:
            orjson.loads(rest)
        except orjson.JSONDecodeError:
            split.truncated_at = lineno + 1
        else:
            yield [rest]


def truncated_warning(source: str, lineno: int) -> str:
    return (f"{source}:{lineno}: truncated last line skipped "
            "(no newline, not valid JSON: a crash mid-write?)")


class _Pairer:
    """Pairs invokes with completions across blocks; routes rows to their shard files."""

    def __init__(self, split: Split, tag: str = "0", orphans_ok: bool = False):
        self.split = split
        self.tag = tag  # this reader's spill files: shard-<s>.<tag>.pickle
        #: reading a byte range after the first: a process's first event may be the
        #: completion of an invoke in an earlier range (an orphan, paired by the caller)
        self.orphans_ok = orphans_ok
        self.orphans: dict[Any, tuple[Any, ...]] = {}  # process -> completion record
        self.seen: set[int] = set()  # process codes with an event in this range
        self.first_index: int | None = None
        self.first_time: int | None = None
        self.procs: dict[Any, int] = {}
        self.fs: dict[Any, int] = {}
        self.open: dict[int, Any] = {}  # process code -> block position or carried row
        self.last_index = INT64_MIN
        self.last_time = INT64_MIN
        self.key_shard: dict[Any, int] = {}
        self.files: dict[int, BinaryIO] = {}
        self.proc_is_client: dict[int, bool] = {}

    def block(self, ops: list[Any]) -> None:
        cols = Columns(len(ops))
        cols.procs, cols.fs = self.procs, self.fs
        if not cols.add(ops) or not cols.proc_types <= {int, str}:
            raise Doubt("not for the columnar path")
        index, times = cols.index, cols.time
        if (index.max() == OPEN or times.max() == OPEN or index.min() == INT64_MIN
                or times.min() == INT64_MIN):
            raise Doubt("64-bit bounds")
        if index[0] <= self.last_index or np.any(index[1:] <= index[:-1]):
            raise Doubt("index not increasing")
        if times[0] < self.last_time or np.any(times[1:] < times[:-1]):
            raise Doubt("time goes backwards")
        self.last_index, self.last_time = int(index[-1]), int(times[-1])
        if self.first_index is None:
            self.first_index, self.first_time = int(index[0]), int(times[0])
        inv_pos: list[int] = []
        comp_pos: list[int] = []
        cross: list[tuple[tuple[Any, ...], int]] = []
        orphan_pos: list[int] = []
        open_ = self.open
        seen = self.seen
        for i, (t, p) in enumerate(zip(cols.typ.tolist(), cols.pcode.tolist())):
            if t == 0:
                if p in open_:
                    raise Doubt("invoke while open")
                open_[p] = i
                seen.add(p)
            else:
                j = open_.pop(p, None)
                if j is None:
                    if not self.orphans_ok or p in seen:
                        raise Doubt("completion without invoke")
                    seen.add(p)
                    orphan_pos.append(i)
                elif type(j) is int:
                    inv_pos.append(j)
                    comp_pos.append(i)
                else:
                    cross.append((j, i))
        inv = np.array(inv_pos, dtype=np.int64)
        cd = np.array(comp_pos, dtype=np.int64)
        if not np.array_equal(cols.fcode[inv], cols.fcode[cd]):
            raise Doubt("completion of another f")
        obj = cols.obj
        node = obj["node"][cd]
        no_node = np.array([x is None for x in node.tolist()], dtype=bool)
        node[no_node] = obj["node"][inv[no_node]]
        rows = {
            "process": obj["process"][inv], "f": obj["f"][inv], "key": obj["key"][inv],
            "value": obj["value"][inv], "result": obj["value"][cd],
            "type": _TYPE_NAMES[cols.typ[cd]], "invoke_time": times[inv],
            "complete_time": times[cd], "invoke_index": index[inv],
            "complete_index": index[cd], "node": node, "meta": obj["meta"][cd],
            "final": cols.final[inv] | cols.final[cd], "error": obj["error"][cd],
        }
        for i in orphan_pos:
            self.orphans[obj["process"][i]] = completion(cols, i)
        extra = [join(rec, completion(cols, i)) for rec, i in cross]
        self._emit(rows, extra)
        for p, j in list(open_.items()):  # still open: carry the invoke's own fields
            if type(j) is int:
                open_[p] = (cols.fcode[j], obj["process"][j], obj["f"][j], obj["key"][j],
                            obj["value"][j], int(times[j]), int(index[j]), obj["node"][j],
                            bool(cols.final[j]))

    def finish(self, complete: bool) -> None:
        """Close the spill files; `complete`: the whole file was read, so the invokes still
        open never completed (type info, as the reader makes them)."""
        try:
            if complete:
                extra = [join(rec, None) for rec in self.open.values()]
                self.open.clear()
                if extra:
                    self._emit(None, extra)
        finally:
            for fh in self.files.values():
                fh.close()

    def _emit(self, rows: dict[str, np.ndarray] | None, extra: list[list[Any]]) -> None:
        if extra:
            add = {c: np.array([r[k] for r in extra], dtype=np.int64 if c in _INT_COLS else
                               bool if c == "final" else object)
                   if c in _INT_COLS or c == "final" else _objects([r[k] for r in extra])
                   for k, c in enumerate(COLUMNS)}
            rows = add if rows is None else {c: np.concatenate([rows[c], add[c]])
                                             for c in COLUMNS}
        assert rows is not None
        n = len(rows["invoke_index"])
        if not n:
            return
        self.split.ops += n
        procs = rows["process"].tolist()
        client = np.fromiter((type(p) is int for p in procs), dtype=bool, count=n)
        shard = np.full(n, -1, dtype=np.int64)
        if client.any():
            self.split.client_fs.update(set(rows["f"][client].tolist()))
            ks = self.key_shard
            n_shards = self.split.n_shards
            sel = np.flatnonzero(client)
            codes = []
            for k in rows["key"][sel].tolist():
                s = ks.get(k) if type(k) in (str, int) else None
                if s is None:
                    h = hashable(k)
                    s = hash(h) % n_shards
                    if type(k) in (str, int):
                        ks[k] = s
                codes.append(s)
            shard[sel] = codes
        for s in np.unique(shard).tolist():
            sel = np.flatnonzero(shard == s)
            part = {c: a[sel] for c, a in rows.items()} if len(sel) < n else rows
            if s < 0:
                for c in COLUMNS:
                    self.split.context.setdefault(c, []).append(part[c])
                continue
            self.split.shard_rows[s] += len(sel)
            fh = self.files.get(s)
            if fh is None:
                fh = self.files[s] = open(self.split.directory / f"shard-{s}.{self.tag}.pickle",
                                          "wb")
            dump_batch(fh, part)


def completion(cols: Columns, i: int) -> tuple[Any, ...]:
    """The fields of the completion at `i` that its row takes (see `join`)."""
    obj = cols.obj
    return (obj["f"][i], int(cols.typ[i]), obj["value"][i], int(cols.time[i]),
            int(cols.index[i]), obj["node"][i], obj["meta"][i], bool(cols.final[i]),
            obj["error"][i])


def join(rec: tuple[Any, ...], comp: tuple[Any, ...] | None) -> list[Any]:
    """One row (COLUMNS order) from a carried invoke record and its completion record (None:
    never completed: type info, as the reader makes it). Doubt if the fs differ."""
    _, proc, f, key, value, t, idx, node, final = rec
    if comp is None:
        return [proc, f, key, value, None, "info", t, OPEN, idx, -1, node, None, final,
                None]
    cf, typ, result, ct, cidx, cnode, meta, cfinal, error = comp
    if cf != f:
        raise Doubt("completion of another f")
    return [proc, f, key, value, result, _TYPE_NAMES[typ], t, ct, idx, cidx,
            cnode if cnode is not None else node, meta, final or cfinal, error]


def _objects(values: list[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


#: target size of one shard's slice of the file: its History is checked in memory
SHARD_BYTES = 48 << 20


def split_history(path: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None,
                  n_shards: int | None = None, workers: int | None = None) -> Split:
    """Read the JSONL history at `path` (a file) into shards under `directory` (a new temp
    directory if None; the caller removes it). Raises Doubt (see the module doc).

    `workers` processes (default: one per core, up to 4, fewer for a small file) each read
    a byte range of the file (chaos.history.ranges); 1 reads it here, in one pass.
    """
    p = Path(path)
    size = p.stat().st_size
    if n_shards is None:
        n_shards = max(1, -(-size // SHARD_BYTES))
    d = Path(directory) if directory is not None else make_directory()
    d.mkdir(parents=True, exist_ok=True)
    from chaos.history import ranges
    if workers is None:
        workers = ranges.default_workers(size)
    if workers > 1:
        return ranges.split_parallel(p, d, n_shards, workers)
    split = Split(source=str(p), n_shards=n_shards, directory=d,
                  shard_rows=[0] * n_shards)
    pairer = read_range(p, split, _Pairer(split), 0, None, complete=True)
    if not split.lines:
        raise Doubt("empty")
    split.end_time = pairer.last_time
    if split.truncated_at is not None:
        split.warnings.append(truncated_warning(split.source, split.truncated_at))
    return split


def read_range(p: Path, split: Split, pairer: _Pairer, start: int, end: int | None,
               complete: bool) -> _Pairer:
    """Read the bytes [start, end) of `p` block by block into `pairer` (its spill files
    closed on return). `complete`: this is the whole file, so the invokes still open at its
    end never completed (rows of type info); else they stay in `pairer.open` for the caller.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a block is a few hundred thousand cycle-free objects: no GC passes
    done = False
    try:
        loads = orjson.loads
        for lines in _lines(p, split, start, end):
            split.lines += len(lines)
            try:
                ops = list(map(loads, lines))
            except orjson.JSONDecodeError:
                raise Doubt("bad JSON") from None
            del lines
            pairer.block(ops)
        done = True
    finally:
        pairer.finish(complete and done)
        if gc_was_enabled:
            gc.enable()
    return pairer
