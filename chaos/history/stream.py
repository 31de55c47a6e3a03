"""Read a history.jsonl in bounded memory: parse, validate and pair it block by block, and
spill the paired operations to disk in shards by key.

A history can be far bigger than memory (an hour of load is tens of millions of lines). This
module reads it a block at a time (`BLOCK_LINES` lines), parses each block with the reader's
columnar machinery (`chaos.history.columnar.Columns`), checks the reader's rules and pairs
invokes with completions across blocks (only the invokes still open are carried from one
block to the next: at most one per process; a block is paired with numpy, and line by line
only when a process's lines do not alternate). A big file is read by one process per core,
each a byte range (chaos.history.ranges); a file of DUCK_MIN_BYTES or more is first offered
to DuckDB's JSON reader (chaos.history.duck: the lines parsed in C++ into the same columns,
no Python object per line), which steps aside for anything it cannot read exactly as orjson
does. Each completed operation is one row of the pairs
contract (chaos.history.model) and goes to a spill file (format: chaos.history.spill):

- client operations (integer processes) to shard `hash(key) % n_shards` (read by one
  process: the keys in turn, in order of first appearance), so every op of a key lands in
  one shard: the per-key checkers (lost writes, stale reads, linearizability) judge a shard
  as they would the whole history;
- everything else (nemesis, monitor, controller: small, bounded by the run's length, not its
  load) to the context, kept in memory.

A key with many ops (a register workload has a handful of keys for the whole run) is cut into
*pieces* so no shard holds more than about `PIECE_OPS` of its ops: once its current piece is
that big, the key is cut at the next block boundary (blocks are then `CUT_LINES` long) where
none of its ops is open and its last completion is older than the block's last line (so
every later op is invoked strictly after it: a quiescent point, every op on one side
completed before any op on the other was invoked). Piece g of a key goes to shard
`base + g * base_shards`, so reading the shards in order reads a key's pieces in time order,
and the checkers that can carry what they need across a cut (`cuttable` fs: the register and
kv ops: linearizability carries its possible states, stale reads the writes before the cut)
continue a key from piece to piece. A key with any other f is never cut (lost writes judge a
set's reads against every add before them). For the carry's bookkeeping the splitter notes
which values of unknown-outcome ops (info) a later piece may observe (`Split.later_observes`:
one its rows mention, or any at all when it has a failed cas the checker observes: "not the
expected value" may hold only because an unknown write took effect).
Cutting needs the file read in order by one process: a history whose first block has only
`cuttable` client ops (a register or kv workload) is read so; any other is read in parallel
byte ranges (chaos.history.ranges) and never cut.

Anything the streaming rules doubt (a bad line, an index that does not increase, time going
backwards, an unmatched completion, ...) raises `Doubt`: the caller then reads the history
with `chaos.history.reader`, which names the file and line of the problem exactly as before,
or, for a valid but unusual history (indexes out of order), analyses it in memory. The
verdict never depends on which path read the history (tests compare them).
"""
from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import orjson
import pandas as pd

from chaos.checkers._frame import hashable
from chaos.errors import BadInput
from chaos.history.columnar import INT64_MIN, Columns, _pointers
from chaos.history.model import COLUMNS, OPEN, History, frame_from_columns
from chaos.history.reader import BOM
from chaos.history.pieces import Pieces, key_code
from chaos.history.spill import dump_batch, load_batches, make_directory

_log = logging.getLogger(__name__)
BLOCK_LINES = 65536  # lines parsed at a time: ~10 MB of dicts, whatever the history's size
READ_BYTES = 8 << 20  # bytes read from the file at a time
_TYPE_NAMES = np.array(["invoke", "ok", "fail", "info"], dtype=object)
_INT_COLS = ("invoke_time", "complete_time", "invoke_index", "complete_index")
_KEY_TYPES = frozenset({str, int})  # keys `key_code` returns as they are


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
    reader: str = "orjson"  # what parsed the lines: "duckdb" (chaos.history.duck) or "orjson"
    base_shards: int = 0  # shards of the first pieces; piece g of a key: + g * base_shards
    cut_keys: dict[Any, int] = field(default_factory=dict)  # key -> its last piece with rows
    #: (key, value) -> the last piece where a row mentions `value`, an unknown op's value from
    #: an earlier piece of the key
    observed: dict[tuple[Any, Any], int] = field(default_factory=dict)
    #: key -> (the last piece with a failed cas tagged "compare-failed", the last piece with
    #: any failed cas): a failed compare the checker observes sees "not the expected value",
    #: which any unknown op's effect may have made true (see `later_observes`)
    failed_cas: dict[Any, tuple[int, int]] = field(default_factory=dict)

    def piece(self, i: int) -> int:
        """Which piece of its keys shard `i` holds (0 unless a key was cut)."""
        return i // self.base_shards if self.base_shards else 0

    def continues(self, key: Any, piece: int) -> bool:
        """Whether `key` has a piece after `piece`."""
        return self.cut_keys.get(hashable(key), 0) > piece

    def later_observes(self, key: Any, value: Any, piece: int, fail: str = "observe") -> bool:
        """Whether a piece of `key` after `piece` may observe `value` (an unknown op's effect):
        some row there mentions it, or there is a failed cas the linearizable checker judges
        as an answer under its fail mode `fail` (it observes "not the expected value", which
        any effect may explain): a conservative superset of what a model observes."""
        try:
            k = hashable(key)
            fails = self.failed_cas.get(k)
            if fails is not None and fail != "ignore" and fails[fail != "auto"] > piece:
                return True
            return self.observed.get((k, hashable(value)), -1) > piece
        except TypeError:
            return True

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

    def __init__(self, split: Split, tag: str = "0", orphans_ok: bool = False,
                 pieces: Pieces | None = None, spread: bool = False):
        self.split = split
        #: the only reader of the file: keys go to the shards in turn, in order of first
        #: appearance (a register history's handful of keys then fill as many shards, which
        #: can be checked side by side: chaos.checkers.shard_pool); else by hash, the same
        #: shard in every reader of a byte range (chaos.history.ranges)
        self.spread = spread
        self.pieces = pieces or Pieces(split, 1 << 62, frozenset())
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
        self._client_codes: list[bool] = []  # process code -> a client's (`_clients`)

    def block(self, ops: list[Any]) -> None:
        """Pair the next block of op dicts (file order)."""
        cols = Columns(len(ops))
        cols.procs, cols.fs = self.procs, self.fs
        if not cols.add(ops):
            raise Doubt("not for the columnar path")
        self.columns(cols)

    def columns(self, cols: Columns) -> None:
        """Pair the next block, as columns whose process and f codes are this pairer's
        (`procs`, `fs`): from `block`, or from a columnar reader (chaos.history.duck)."""
        if not cols.proc_types <= {int, str}:
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
        fast = self._pair_vectorised(cols)
        orphan_pos: list[int] = []
        if fast is not None:
            inv, cd, cross = fast
        else:
            inv, cd, cross, orphan_pos = self._pair_loop(cols)
        if not np.array_equal(cols.fcode[inv], cols.fcode[cd]):
            raise Doubt("completion of another f")
        obj = cols.obj
        node = obj["node"][cd]
        no_node = _pointers(node) == id(None)
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
        self._emit(rows, extra, self._clients()[cols.pcode[inv]])
        open_ = self.open
        for p, j in list(open_.items()):  # still open: carry the invoke's own fields
            if type(j) is int:
                open_[p] = (cols.fcode[j], obj["process"][j], obj["f"][j], obj["key"][j],
                            obj["value"][j], int(times[j]), int(index[j]), obj["node"][j],
                            bool(cols.final[j]))
        if self.pieces.cuttable:
            self.pieces.cut({key_code(rec[3]) for rec in open_.values()}, self.last_time)

    def _pair_loop(self, cols: Columns) -> tuple[np.ndarray, np.ndarray,
                                                 list[tuple[tuple[Any, ...], int]], list[int]]:
        """Pair the block line by line: (invoke positions, their completions' positions,
        (carried invoke, completion position) pairs, orphan completions' positions).
        Raises Doubt exactly where a reader of the whole file would."""
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
        return (np.array(inv_pos, dtype=np.int64), np.array(comp_pos, dtype=np.int64),
                cross, orphan_pos)

    def _pair_vectorised(self, cols: Columns) -> tuple[np.ndarray, np.ndarray,
                                                       list[tuple[tuple[Any, ...], int]]] | None:
        """The same pairing with numpy, for the usual block: each process's lines alternate
        invoke, completion (starting with a completion when its invoke is carried from an
        earlier block). None when any process's lines do not (a Doubt, or an orphan of a
        later byte range): then `_pair_loop` decides, line by line."""
        pc = cols.pcode
        n = len(pc)
        order = np.argsort(pc, kind="stable")
        cs = pc[order]
        start = np.ones(n, dtype=bool)
        start[1:] = cs[1:] != cs[:-1]
        gstart = np.flatnonzero(start)
        sizes = np.diff(np.append(gstart, n))
        procs = cs[gstart].tolist()
        open_ = self.open
        carried_g = np.fromiter((p in open_ for p in procs), dtype=bool, count=len(procs))
        rank = np.arange(n) - np.repeat(gstart, sizes)
        is_inv = cols.typ[order] == 0
        if not np.array_equal(is_inv, (rank % 2 == 0) != np.repeat(carried_g, sizes)):
            return None
        has_next = np.zeros(n, dtype=bool)
        has_next[:-1] = ~start[1:]
        q = np.flatnonzero(is_inv & has_next)
        cross = [(open_.pop(procs[g]), int(order[gstart[g]]))
                 for g in np.flatnonzero(carried_g).tolist()]
        last = gstart + sizes - 1
        for g in np.flatnonzero(is_inv[last]).tolist():
            open_[procs[g]] = int(order[last[g]])
        self.seen.update(procs)
        return order[q], order[q + 1], cross

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

    def _clients(self) -> np.ndarray:
        """Whether each process code (`procs`) is a client's (an integer process)."""
        known = self._client_codes
        if len(known) < len(self.procs):
            known += [type(p) is int for p in list(self.procs)[len(known):]]
        return np.array(known, dtype=bool)

    def _emit(self, rows: dict[str, np.ndarray] | None, extra: list[list[Any]],
              client: np.ndarray | None = None) -> None:
        """Spill `rows` and `extra` (rows as lists) to their shards; `client`: which of
        `rows` are client ops, when the caller knows."""
        if client is None and rows is not None:
            client = _is_int(rows["process"])
        if extra:
            more = np.fromiter((type(r[0]) is int for r in extra), dtype=bool, count=len(extra))
            client = more if rows is None or client is None else np.concatenate([client, more])
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
        assert client is not None
        shard = np.full(n, -1, dtype=np.int64)
        if client.any():
            self.split.client_fs.update(set(rows["f"][client].tolist()))
            n_shards = self.split.base_shards or self.split.n_shards
            sel = np.flatnonzero(client)
            codes, keys = self._shards(rows["key"][sel], n_shards)
            pieces = None if keys is None else self.pieces.route(
                keys, rows["f"][sel].tolist(), rows["type"][sel].tolist(),
                rows["value"][sel].tolist(), rows["result"][sel].tolist(),
                rows["complete_time"][sel], rows["error"][sel].tolist())
            shard[sel] = codes if pieces is None else codes + np.array(
                pieces, dtype=np.int64) * n_shards
        # one stable sort by shard, then each shard's rows are a slice (not a mask per shard)
        order = np.argsort(shard, kind="stable")
        ss = shard[order]
        cuts = np.flatnonzero(ss[1:] != ss[:-1]) + 1
        starts, ends = [0, *cuts.tolist()], [*cuts.tolist(), n]
        if len(starts) > 1:
            rows = {c: a[order] for c, a in rows.items()}
        for a, b in zip(starts, ends):
            s = int(ss[a])
            part = {c: x[a:b] for c, x in rows.items()} if b - a < n else rows
            if s < 0:  # kept: a copy, not a view that would keep the whole block alive
                for c in COLUMNS:
                    self.split.context.setdefault(c, []).append(part[c].copy())
                continue
            self.split.shard_rows[s] += b - a
            fh = self.files.get(s)
            if fh is None:
                fh = self.files[s] = open(self.split.directory / f"shard-{s}.{self.tag}.pickle",
                                          "wb")
            dump_batch(fh, part)

    def _shards(self, keys: np.ndarray, n_shards: int) -> tuple[np.ndarray, list[Any] | None]:
        """Each client row's shard (of its key's first piece), and the rows' keys as the
        splitter files them (`key_code`) when a key may be cut (else None). Each distinct
        key (as a dict tells them: 1 == 1.0 == true) is looked up once."""
        ks = self.key_shard
        try:
            at, uniques = _distinct(keys)
        except TypeError:  # a list or dict key: by key_code
            at, uniques = _distinct(_objects([key_code(k) for k in keys.tolist()]))
        shard_of = np.empty(len(uniques), dtype=np.int64)
        coded_u = [k if type(k) in _KEY_TYPES else key_code(k) for k in uniques]
        for j, k in enumerate(coded_u):
            s = ks.get(k)
            if s is None:
                s = ks[k] = (len(ks) if self.spread else hash(k)) % n_shards
            shard_of[j] = s
        if not self.pieces.cuttable:
            return shard_of[at], None
        return shard_of[at], _objects(coded_u)[at].tolist()


def _distinct(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Each value's position among the distinct values (first seen first), and those values,
    as a dict tells them apart (1 == 1.0 == true), hashed in C by pandas. pandas sets None
    aside (-1): it gets its own position here (a JSON value is never NaN, the other thing
    pandas sets aside). TypeError for an unhashable value."""
    at, uniques = pd.factorize(values)
    out = uniques.tolist()
    if (at < 0).any():
        at[at < 0] = len(out)
        out.append(None)
    return at, out


def _is_int(procs: np.ndarray) -> np.ndarray:
    """Which rows have an integer process (a client), testing each distinct process once."""
    at, uniques = _distinct(procs)
    is_int = np.fromiter((type(p) is int for p in uniques), dtype=bool, count=len(uniques))
    return is_int[at]


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


#: from this size on a history is read by DuckDB (chaos.history.duck) where it can be
DUCK_MIN_BYTES = 8 << 20
#: target size of one shard's slice of the file: its History is checked in memory
SHARD_BYTES = 48 << 20
#: a key's ops per piece (see the module doc): one piece's History and search fit in memory
PIECE_OPS = 100_000
#: while a key waits for its cut, blocks are paired this many lines at a time: each end is a
#: chance of a quiescent point (a key with 16 clients on 5 keys has none open ~3% of the time)
CUT_LINES = 1024
#: shards (of first pieces) at least, for a big history whose keys may be cut: a register
#: workload's few keys each get their own, so processes can check them side by side
MIN_CUT_SHARDS = 8


def split_history(path: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None,
                  n_shards: int | None = None, workers: int | None = None,
                  piece_ops: int = PIECE_OPS, cuttable: frozenset[str] = frozenset()) -> Split:
    """Read the JSONL history at `path` (a file) into shards under `directory` (a new temp
    directory if None; the caller removes it). Raises Doubt (see the module doc).

    `workers` processes (default: one per core, up to 4, fewer for a small file) each read
    a byte range of the file (chaos.history.ranges); 1 reads it here, in one pass. A key
    whose fs are all in `cuttable` is cut into pieces of about `piece_ops` ops, when the
    history's first block has only such client ops (it is then read in one pass).
    """
    p = Path(path)
    size = p.stat().st_size
    d = Path(directory) if directory is not None else make_directory()
    d.mkdir(parents=True, exist_ok=True)
    from chaos.history import ranges
    if cuttable and not _only(p, cuttable):
        cuttable = frozenset()
    if n_shards is None:
        n_shards = max(1, -(-size // SHARD_BYTES))
        if cuttable and size > SHARD_BYTES:  # a few long keys: one shard each (`spread`)
            n_shards = max(n_shards, MIN_CUT_SHARDS)
    if workers is None and _use_duck(size):
        split = _split_duck(p, d, n_shards, piece_ops if cuttable else 1 << 62, cuttable)
        if split is not None:
            return split
    if workers is None:
        workers = 1 if cuttable else ranges.default_workers(size)
    if workers > 1:
        return ranges.split_parallel(p, d, n_shards, workers)
    split = Split(source=str(p), n_shards=n_shards, directory=d,
                  shard_rows=[0] * n_shards, base_shards=n_shards)
    pieces = Pieces(split, piece_ops if cuttable else 1 << 62, cuttable)
    pairer = read_range(p, split, _Pairer(split, pieces=pieces, spread=True), 0, None,
                        complete=True)
    if not split.lines:
        raise Doubt("empty")
    split.end_time = pairer.last_time
    if split.truncated_at is not None:
        split.warnings.append(truncated_warning(split.source, split.truncated_at))
    return split


def _use_duck(size: int) -> bool:
    """Whether to try DuckDB's reader (chaos.history.duck) on a file of `size` bytes:
    CHAOS_HISTORY_READER=duckdb always, =orjson never, else (auto) from DUCK_MIN_BYTES on
    (below it orjson is as quick: DuckDB's start costs tens of milliseconds)."""
    choice = os.environ.get("CHAOS_HISTORY_READER", "auto")
    if choice not in ("auto", "duckdb", "orjson"):
        raise BadInput(f"CHAOS_HISTORY_READER must be auto, duckdb or orjson, not {choice!r}")
    return choice == "duckdb" or (choice == "auto" and size >= DUCK_MIN_BYTES)


def _split_duck(p: Path, d: Path, n_shards: int, piece_ops: int,
                cuttable: frozenset[str]) -> Split | None:
    """`split_history` read by DuckDB (chaos.history.duck) in one pass with every core; None
    when the file is not for it (its spill files are then removed: the caller reads it
    again with orjson, which names any problem, or raises the Doubt that sends it to the
    in-memory reader)."""
    from chaos.history import duck
    if not duck.available():
        return None
    split = Split(source=str(p), n_shards=n_shards, directory=d,
                  shard_rows=[0] * n_shards, base_shards=n_shards)
    pairer = _Pairer(split, tag="d", pieces=Pieces(split, piece_ops, cuttable), spread=True)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    done = False
    try:
        for batch in duck.batches(p, d):
            cols = duck.to_columns(batch, pairer.procs, pairer.fs)
            split.lines += cols.n
            if pairer.pieces.wants():  # a cut is due: look for a quiescent point more often
                for k in range(0, cols.n, CUT_LINES):
                    pairer.columns(cols.slice(k, k + CUT_LINES))
            else:
                pairer.columns(cols)
        done = True
    except (duck.NotHere, Doubt) as exc:
        _log.info("%s: not read by DuckDB (%s): the orjson reader reads it", p, exc)
    finally:
        try:
            pairer.finish(done)
        except Doubt:
            done = False
        if gc_was_enabled:
            gc.enable()
    if not done or not split.lines:
        for f in d.glob("shard-*.d.pickle"):
            f.unlink()
        return None
    split.end_time = pairer.last_time
    split.reader = "duckdb"
    return split


def _only(p: Path, fs: frozenset[str]) -> bool:
    """Whether the client ops (integer process) of the file's first block all have an f in
    `fs` (and there is one): the history is one a checker can carry across cuts."""
    seen = False
    with open(p, "rb") as fh:
        for n, line in enumerate(fh):
            if n >= BLOCK_LINES:
                break
            try:
                op = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(op, dict) and type(op.get("process")) is int:
                if op.get("f") not in fs:
                    return False
                seen = True
    return seen


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
            if pairer.pieces.wants():  # a cut is due: look for a quiescent point more often
                for k in range(0, len(ops), CUT_LINES):
                    pairer.block(ops[k:k + CUT_LINES])
            else:
                pairer.block(ops)
        done = True
    finally:
        pairer.finish(complete and done)
        if gc_was_enabled:
            gc.enable()
    return pairer
