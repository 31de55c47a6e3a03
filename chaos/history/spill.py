"""What the bounded-memory analysis spills to disk, and where.

The format (`dump_batch`, `load_batches`): a shard file is a sequence of pickled batches of
rows, each object column written as one JSON array (orjson writes and reads a column of
small values many times faster than pickle, which visits every object on its own), int and
bool columns as they are, and the int lists that read-sets return packed into one int64
array per batch (see `_pack`).

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
from typing import Any, BinaryIO, Iterator

import numpy as np
import orjson

from chaos.checkers._frame import int_array

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


def encode(part: dict[str, np.ndarray]) -> dict[str, Any]:
    """A batch of rows (COLUMNS -> arrays) as it is spilled.

    Every value came out of orjson.loads, so the JSON round trip is exact (same types, same
    values); a column orjson cannot write (a lone surrogate in a string, a carried numpy
    value) is pickled as it is.
    """
    out: dict[str, Any] = {}
    for c, a in part.items():
        if a.dtype == object:
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


def decode(batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """The rows of a batch written by `encode`."""
    out: dict[str, np.ndarray] = {}
    for c, a in batch.items():
        if c == _PACKED:
            continue
        if type(a) is _Json:
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


def dump_batch(fh: BinaryIO, part: dict[str, np.ndarray]) -> None:
    pickle.dump(encode(part), fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_batches(fh: BinaryIO) -> Iterator[dict[str, np.ndarray]]:
    while True:
        try:
            batch = pickle.load(fh)
        except EOFError:
            return
        yield decode(batch)
