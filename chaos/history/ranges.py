"""Split a history on several cores: each process reads one byte range of the file.

Parsing JSON is most of the cost of `chaos analyze` on a big history, and it is one core's
work in one process. Here the file is cut into `workers` byte ranges at line boundaries; the
caller reads the first range itself while forked worker processes read the others, each with
its own `chaos.history.pairing.Pairer` writing its own spill files (`shard-<s>.<range>.pickle`)
in the same directory. What crosses a range boundary is small and returned to the caller:

- the invokes still open at a range's end (at most one per process), and
- the completions at a range's start whose invoke is in an earlier range ("orphans": at most
  one per process, each the first event of its process in the range),

which the caller pairs in file order, as one reader would (a completion with no open invoke,
or an invoke while its process is open, is a Doubt exactly as in one pass), then spills those
rows and the never-completed invokes. It also checks what one reader checks across blocks
at each boundary: indexes increase, time never decreases.

Keys go to shard `hash(key) % n_shards` in every process: the workers are forked, so they
share the parent's hash secret (str hashes are randomised per interpreter), and equal keys
(`1 == 1.0 == True`, as the checkers group them) land in one shard. Without fork (not Linux),
one process reads the whole file.

The processes are forked by chaos.history.forked (a worker dies with its parent: a SIGKILLed
analysis leaves no worker writing into a directory the next analysis sweeps).
"""
from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.history.forked import can_fork, cores, map_forked
from chaos.history.stream import (
    Doubt,
    Split,
    Pairer,
    join,
    read_range,
    truncated_warning,
)

#: a file below this many bytes per extra worker is read by one process (forking and the
#: boundary work cost more than they save)
MIN_RANGE_BYTES = 16 << 20
MAX_WORKERS = 4


def default_workers(size: int) -> int:
    """How many processes read a file of `size` bytes: one per core (up to MAX_WORKERS),
    at most one per MIN_RANGE_BYTES, one where there is no fork."""
    if not can_fork():
        return 1
    return max(1, min(cores(), MAX_WORKERS, size // MIN_RANGE_BYTES))


def boundaries(path: Path, n: int) -> list[int]:
    """n + 1 offsets cutting the file into n ranges, each after a newline (some ranges may
    be empty: a long line, a small file)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, n):
            at = max(size * k // n, cuts[-1])
            fh.seek(at)
            if at > 0:
                fh.seek(at - 1)
                fh.readline()  # to just after the newline at or after `at - 1`
            cuts.append(min(fh.tell(), size))
    cuts.append(size)
    return cuts


@dataclass
class Part:
    """What one range's reader hands back (its rows are in its spill files)."""

    split: Split  # its counts, context ops, warnings (shard files are on disk)
    opens: dict[Any, tuple[Any, ...]]  # process -> invoke record, open at the range's end
    orphans: dict[Any, tuple[Any, ...]]  # process -> completion record of an earlier invoke
    seen: set[Any]  # processes with an event in the range
    first: tuple[int, int] | None  # (index, time) of the first line, None: no line
    last: tuple[int, int] | None


def _read_part(path: Path, directory: Path, n_shards: int, k: int, start: int,
               end: int) -> Part:
    split = Split(source=str(path), n_shards=n_shards, directory=directory,
                  shard_rows=[0] * n_shards)
    pairer = read_range(path, split, Pairer(split, tag=str(k), orphans_ok=k > 0), start,
                        end, complete=False)
    names = {code: proc for proc, code in pairer.procs.items()}
    first = last = None
    if pairer.first_index is not None and pairer.first_time is not None:
        first = (pairer.first_index, pairer.first_time)
        last = (pairer.last_index, pairer.last_time)
    return Part(split=split, opens={rec[1]: rec for rec in pairer.open.values()},
                orphans=pairer.orphans, seen={names[c] for c in pairer.seen}, first=first,
                last=last)


def _read_child(*args: Any) -> Part:
    """`_read_part` in a forked child (chaos.history.forked), with its peak RSS noted."""
    part = _read_part(*args)
    part.split.worker_rss = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]
    return part


def split_parallel(path: Path, directory: Path, n_shards: int, workers: int) -> Split:
    """`chaos.history.stream.split_history` on `workers` processes (see the module doc)."""
    cuts = boundaries(path, workers)
    calls = [(_read_part if k == 0 else _read_child,
              (path, directory, n_shards, k, cuts[k], cuts[k + 1])) for k in range(workers)]
    return _merge(path, directory, n_shards, map_forked(calls))


def _merge(path: Path, directory: Path, n_shards: int, parts: list[Part]) -> Split:
    """One Split of the parts: pairs what crosses the boundaries, checks order across them."""
    split = Split(source=str(path), n_shards=n_shards, directory=directory,
                  shard_rows=[0] * n_shards)
    opens: dict[Any, tuple[Any, ...]] = {}
    rows: list[list[Any]] = []
    last: tuple[int, int] | None = None
    raw = 0
    for part in parts:
        ps = part.split
        if part.first is not None:
            if last is not None and part.first[0] <= last[0]:
                raise Doubt("index not increasing")
            if last is not None and part.first[1] < last[1]:
                raise Doubt("time goes backwards")
            last = part.last
        for proc, comp in part.orphans.items():
            rec = opens.pop(proc, None)
            if rec is None:
                raise Doubt("completion without invoke")
            rows.append(join(rec, comp))
        if any(proc in part.seen for proc in opens):
            raise Doubt("invoke while open")  # its first event here is another invoke
        opens.update(part.opens)
        split.lines += ps.lines
        split.ops += ps.ops
        split.warnings += ps.warnings
        for c, arrays in ps.context.items():
            split.context.setdefault(c, []).extend(arrays)
        split.shard_rows = [a + b for a, b in zip(split.shard_rows, ps.shard_rows)]
        split.client_fs |= ps.client_fs
        split.worker_rss += ps.worker_rss
        if ps.truncated_at is not None:
            split.warnings.append(truncated_warning(split.source, raw + ps.truncated_at))
        raw += ps.raw_lines
    if not split.lines:
        raise Doubt("empty")
    assert last is not None
    split.end_time = last[1]
    rows += [join(rec, None) for rec in opens.values()]  # never completed
    pairer = Pairer(split, tag="x")
    try:
        if rows:
            pairer._emit_rows(rows)
    finally:
        pairer.finish(False)
    return split
