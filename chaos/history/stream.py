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
that big, the key is cut at its next quiescent point: the block is sliced just after the
first line where none of its ops is open and its last completion is older than that line
(so every later op is invoked strictly after it: every op on one side completed before any
op on the other was invoked). Piece g of a key goes to shard
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

import logging
import os
from pathlib import Path
from typing import Iterator

import orjson

from chaos.errors import BadInput
from chaos.history.columnar import Columns
from chaos.history.model import gc_paused
from chaos.history.reader import BOM
from chaos.history.pieces import Pieces
from chaos.history.pairing import Pairer, join
from chaos.history.spill import make_directory
from chaos.history.split import Doubt, Split

__all__ = ["Doubt", "Split", "Pairer", "join", "split_history", "read_range",
           "truncated_warning"]

_log = logging.getLogger(__name__)
BLOCK_LINES = 65536  # lines parsed at a time: ~10 MB of dicts, whatever the history's size
READ_BYTES = 8 << 20  # bytes read from the file at a time


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


#: from this size on a history is read by DuckDB (chaos.history.duck) where it can be
DUCK_MIN_BYTES = 8 << 20
#: target size of one shard's slice of the file: its History is checked in memory
SHARD_BYTES = 48 << 20
#: a key's ops per piece (see the module doc): one piece's History and search fit in memory
PIECE_OPS = 100_000
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
    pairer = read_range(p, split, Pairer(split, pieces=pieces, spread=True), 0, None,
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
    pairer = Pairer(split, tag="d", pieces=Pieces(split, piece_ops, cuttable), spread=True)
    done = False
    with gc_paused():
        try:
            _pair_blocks(pairer, (duck.to_columns(batch, pairer.procs, pairer.fs)
                                  for batch in duck.batches(p, d)))
            done = True
        except (duck.NotHere, Doubt) as exc:
            _log.info("%s: not read by DuckDB (%s): the orjson reader reads it", p, exc)
        finally:
            try:
                pairer.finish(done)
            except Doubt:
                done = False
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


def read_range(p: Path, split: Split, pairer: Pairer, start: int, end: int | None,
               complete: bool) -> Pairer:
    """Read the bytes [start, end) of `p` block by block into `pairer` (its spill files
    closed on return). `complete`: this is the whole file, so the invokes still open at its
    end never completed (rows of type info); else they stay in `pairer.open` for the caller.
    """
    done = False
    with gc_paused():  # a block is a few hundred thousand cycle-free objects
        try:
            _pair_blocks(pairer, _parsed(_lines(p, split, start, end), pairer))
            done = True
        finally:
            pairer.finish(complete and done)
    return pairer


def _parsed(blocks: Iterator[list[bytes]], pairer: Pairer) -> Iterator[Columns]:
    """Each block of lines parsed by orjson into columns coded as `pairer` codes them."""
    loads = orjson.loads
    for lines in blocks:
        try:
            ops = list(map(loads, lines))
        except orjson.JSONDecodeError:
            raise Doubt("bad JSON") from None
        del lines
        cols = Columns(len(ops))
        cols.procs, cols.fs = pairer.procs, pairer.fs
        if not cols.add(ops):
            raise Doubt("not for the columnar path")
        yield cols


def _pair_blocks(pairer: Pairer, blocks: Iterator[Columns]) -> None:
    """Pair blocks of columns in file order (whichever reader parsed them); while a cut is
    due (`Pieces.wants`), a block is sliced just after the first line where a waiting key
    is quiescent (`Pairer.next_cut`), so the key is cut there, and the rest goes on."""
    split = pairer.split
    for cols in blocks:
        split.lines += cols.n
        while True:
            at = pairer.next_cut(cols) if pairer.pieces.wants() else None
            if at is None:
                pairer.columns(cols)
                break
            pairer.columns(cols.slice(0, at))
            cols = cols.slice(at, cols.n)
