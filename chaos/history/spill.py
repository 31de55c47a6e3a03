"""What the bounded-memory analysis spills to disk, and where.

The format (`dump_batch`, `load_batches`): a shard file is a sequence of pickled batches of
rows, each object column written as one JSON array (orjson writes and reads a column of
small values many times faster than pickle, which visits every object on its own), int and
bool columns as they are, and the int lists that read-sets return packed into one int64
array per batch (see `_pack`). The columns of a few distinct strings (f, type, key, node,
error: `CODED`) are written as `Coded`: small int codes and the distinct values. They load
back as one object per distinct value (`Coded.column`), so a shard of 100k ops holds a
handful of "read" strings instead of 100k scattered ones: every comparison the checkers
make on them (f == "read", type == "ok") stays in cache, 3-6x faster, and loading skips
JSON; a shard's batches are concatenated and put in order on the codes (`concat`, `take`).
The process and meta columns (`SHARED`: ints, dicts) are coded by identity when the reader
made one object per distinct value (DuckDB's does): `Coded` with each distinct value pickled
once, loaded once, its rows sharing it again (a 100k-op shard then holds a few
hundred {"term": 1} dicts, not 100k to load and free).

The directories: made so that they never outlive their owner for long, even when it is
SIGKILLed (no `finally` runs then).

A directory's name carries its owner's pid and that process's start time
(`chaos-shards-<pid>-<start>-<random>`). Every new analysis first sweeps the directories whose
owner is gone: no such pid, or a pid now used by another process (its start time differs).
Both parts are in the name, so a directory is claimed from the moment it exists (no window
in which a concurrent sweep could take a directory whose owner has not yet marked it).
The parent of an analysis's worker processes owns the directory; the workers only write in it.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple

import numpy as np
import orjson
import pandas as pd

from chaos.checkers._frame import int_array
from chaos.history.columnar import _pointers

PREFIX = "chaos-shards-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-")


def _start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), None when
    there is no such process or no /proc (then only the pid is compared)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields follow the last ")"
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def _alive(pid: int, start: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    now = _start_time(pid)
    return now is None or start == 0 or now == start


def sweep(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the spill directories under `parent` (the temp dir) whose owner is gone;
    returns those removed. Directories of live owners, and anything not named by
    `make_directory`, are left alone."""
    root = Path(parent if parent is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for d in entries:
        m = _NAME.match(d.name)
        if m is None or not d.is_dir() or d.is_symlink():
            continue
        if not _alive(int(m.group(1)), int(m.group(2))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def make_directory(parent: str | os.PathLike[str] | None = None) -> Path:
    """A new spill directory owned by this process, after sweeping the dead owners' ones.
    The caller removes it when done (`shutil.rmtree`); if it is killed, the next one does."""
    sweep(parent)
    pid = os.getpid()
    start = _start_time(pid) or 0
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-{start}-", dir=parent))


class _Json(bytes):
    """An object column spilled as one JSON array (see `encode`)."""


_PACKED = "result:packed"
#: the columns spilled as `Coded` when they hold strings (and None) only
CODED = ("f", "type", "key", "node", "error")
#: the columns spilled as `Coded` when their rows share a few objects (`share`)
SHARED = ("process", "meta")


class Coded(NamedTuple):
    """An object column as codes into its values (`code`: by value, `share`: by identity)."""

    codes: np.ndarray  # int, one per row
    values: list[Any]  # the values, by code

    def column(self) -> np.ndarray:
        """The column as an object array: each distinct value one object, shared by rows."""
        table = np.fromiter(self.values, dtype=object, count=len(self.values))
        return table[self.codes]

    def take(self, rows: np.ndarray) -> "Coded":
        return Coded(self.codes[rows], self.values)

    def slice(self, start: int, end: int) -> "Coded":
        """Rows start..end, with all the values (a value no row uses costs nothing)."""
        return Coded(self.codes[start:end], self.values)


def _objects(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a code per row by identity: rows holding the same object share one, the first row
    of each code). Compares the object pointers (chaos.history.columnar._pointers), never
    the objects: a pass over ints, whatever the objects are."""
    held = np.ascontiguousarray(a)  # alive while its pointers are read (a copy if a is not)
    codes, _ = pd.factorize(_pointers(held))
    # factorize numbers the objects in order of first appearance: where the running max grows
    first = np.searchsorted(np.maximum.accumulate(codes), np.arange(int(codes.max()) + 1))
    return codes, first


def code(a: np.ndarray) -> Coded | None:
    """`a` (an object array) as `Coded` when every value is a str or None, else None.

    The rows' distinct objects first (a reader decodes each distinct text once), then their
    distinct values: pd.factorize gives equal values one code, so only strings are coded
    (True and 1, equal in Python, never share one), its missing values (None, NaN) checked
    to be None.
    """
    if not len(a) or not (type(a[0]) is str or a[0] is None):
        return None
    rows, first = _objects(a)
    objects = a[first]
    try:
        codes, uniq = pd.factorize(objects)
    except TypeError:  # an unhashable value: a list or dict
        return None
    values = uniq.tolist()
    if not all(type(v) is str for v in values):
        return None
    missing = codes < 0
    if missing.any():
        if not (objects[missing] == None).all():  # noqa: E711 - elementwise: NaN is not None
            return None
        codes = np.where(missing, len(values), codes)
        values.append(None)
    return Coded(codes.astype(_small(len(values)))[rows], values)


def share(a: np.ndarray) -> Coded | None:
    """`a` (an object array) as `Coded` by identity: rows holding the same object get one
    code, each distinct object pickled once (rows that shared an object share one again).
    None when the rows share too little: a reader that made an object per row (then the
    JSON array is cheaper)."""
    if not len(a):
        return None
    rows, first = _objects(a)
    if len(first) * 4 > len(a):
        return None
    return Coded(rows.astype(_small(len(first))), a[first].tolist())


def _small(n_values: int) -> type[np.integer[Any]]:
    """The smallest int type of codes into `n_values` values."""
    return np.uint8 if n_values <= 0xFF else np.uint16 if n_values <= 0xFFFF else np.int64


def concat(parts: list[Any]) -> Any:
    """One column from its batches' pieces: a `Coded` when every piece is one (the codes of
    each piece shifted past the values of the pieces before), else an array."""
    if not all(type(p) is Coded for p in parts):
        return np.concatenate([p.column() if type(p) is Coded else p for p in parts])
    at = np.cumsum([0] + [len(p.values) for p in parts[:-1]]).tolist()
    return Coded(np.concatenate([p.codes.astype(np.int64) + k for p, k in zip(parts, at)]),
                 [v for p in parts for v in p.values])


def code_columns(rows: dict[str, np.ndarray]) -> dict[str, Coded]:
    """The columns of `rows` that spill as `Coded` (CODED, SHARED), coded once: a caller
    that spills slices of `rows` (a block cut into shards) passes each its `Coded.slice`
    (`encode`'s `coded`), where coding every slice cost a fixed ~0.1 ms a column."""
    out: dict[str, Coded] = {}
    for c in (*CODED, *SHARED):
        a = rows.get(c)
        if a is not None and a.dtype == object:
            coded = code(a) if c in CODED else share(a)
            if coded is not None:
                out[c] = coded
    return out


def encode(part: dict[str, np.ndarray],
           coded: dict[str, Coded] | None = None) -> dict[str, Any]:
    """A batch of rows (COLUMNS -> arrays) as it is spilled; `coded`: columns already coded
    (`code_columns`), used as they are.

    Every value came out of orjson.loads, so the JSON round trip is exact (same types, same
    values); a column orjson cannot write (a lone surrogate in a string, a carried numpy
    value) is pickled as it is.
    """
    out: dict[str, Any] = {}
    for c, a in part.items():
        if coded is not None and c in coded:
            out[c] = coded[c]
            continue
        if a.dtype == object:
            if coded is None and (c in CODED or c in SHARED):
                got = code(a) if c in CODED else share(a)
                if got is not None:
                    out[c] = got
                    continue
            if c == "result" and "f" in part:
                packed = _pack(a, part["f"])
                if packed is not None:
                    a, out[_PACKED] = packed
            try:
                out[c] = _Json(orjson.dumps(a.tolist()))
                continue
            except (TypeError, orjson.JSONEncodeError):
                pass
        out[c] = a
    return out


def _pack(col: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, tuple[Any, ...]] | None:
    """The non-empty int lists of read-set results as (rows, lengths, all their elements):
    one int64 buffer instead of a JSON array of ints that loads back as thousands of int
    objects. They load back as one int64 array per row, as lost-writes takes them
    (chaos.checkers._frame.flatten; an in-memory read gives lists, which flatten turns into
    the same int64 elements, true and false as 1 and 0 like here; the lines an anomaly cites
    are re-read from the file). A list with an element that is not an int is not packed
    (the JSON path keeps it as it is); None when there is nothing to pack."""
    rows = np.flatnonzero(f == "read-set")
    if not len(rows):
        return None
    vals = col[rows].tolist()
    # int64 arrays: read-sets the DuckDB reader already parsed into one buffer
    # (chaos.history.duck); lists: from orjson
    keep = [k for k, v in enumerate(vals) if (type(v) is list or type(v) is np.ndarray)
            and len(v)]
    if not keep:
        return None
    lists = [vals[k] for k in keep]
    flat: np.ndarray | None
    if all(type(v) is np.ndarray for v in lists):
        flat = np.concatenate(lists)
    else:
        flat = int_array(list(chain.from_iterable(  # from a list: ~30% faster
            v.tolist() if type(v) is np.ndarray else v for v in lists)))
    if flat is None:  # some list holds a non-int: pack the others, row by row
        arrays = [(k, v if type(v) is np.ndarray else int_array(v))
                  for k, v in zip(keep, lists)]
        keep = [k for k, a in arrays if a is not None]
        if not keep:
            return None
        lists = [a for _, a in arrays if a is not None]
        flat = np.concatenate(lists)
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    at = rows[keep]
    rest = col.copy()
    rest[at] = None
    return rest, (at, lengths, flat)


def decode(batch: dict[str, Any], coded: bool = False) -> dict[str, Any]:
    """The rows of a batch written by `encode` (`coded`: `Coded` columns left coded)."""
    out: dict[str, Any] = {}
    for c, a in batch.items():
        if c == _PACKED:
            continue
        if type(a) is Coded and not coded:
            a = a.column()
        elif type(a) is _Json:
            values = orjson.loads(memoryview(a))
            a = np.fromiter(values, dtype=object, count=len(values))
        out[c] = a
    if _PACKED in batch:
        at, lengths, flat = batch[_PACKED]
        result = out["result"]
        ends = np.cumsum(lengths).tolist()
        # views of `flat`, as np.split makes them, without its per-piece Python overhead
        for i, a, b in zip(at.tolist(), [0] + ends[:-1], ends):
            result[i] = flat[a:b]
    return out


def dump_batch(fh: BinaryIO, part: dict[str, np.ndarray],
               coded: dict[str, Coded] | None = None) -> None:
    """Append `part` to a spill file (`coded`: see `encode`)."""
    pickle.dump(encode(part, coded), fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_batches(fh: BinaryIO, coded: bool = False) -> Iterator[dict[str, Any]]:
    """The batches of a spill file, decoded (`coded`: see `decode`)."""
    while True:
        try:
            batch = pickle.load(fh)
        except EOFError:
            return
        yield decode(batch, coded)
