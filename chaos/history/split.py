"""What the streaming reader (chaos.history.stream) makes of a history: a `Split`, its
operations in shard files on disk and its non-client operations in memory; and `Doubt`, the
streaming reader's refusal (the caller then reads the history in memory)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chaos.checkers._frame import hashable
from chaos.history.model import COLUMNS, History, frame_from_columns, gc_paused
from chaos.history.spill import Coded, concat, load_batches

INT_COLS = ("invoke_time", "complete_time", "invoke_index", "complete_index")


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
        """Shard `i` as an in-memory History (its client ops only, ordered by invoke_index).
        Coded columns (chaos.history.spill) are concatenated and ordered as codes.

        The cyclic garbage collector is off meanwhile: loading makes a few hundred thousand
        lists and dicts (values, results, metas), none in a cycle, and each collection it
        would trigger walks them all again (half the load's CPU time otherwise)."""
        parts: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        with gc_paused():
            for path in sorted(self.directory.glob(f"shard-{i}.*.pickle")):
                with open(path, "rb") as fh:
                    for batch in load_batches(fh, coded=True):
                        for c in COLUMNS:
                            parts[c].append(batch[c])
            return _history(parts, self.source, self.warnings)

    def context_history(self, extra: list[dict[str, np.ndarray]] = ()) -> History:  # type: ignore[assignment]
        """The non-client ops (nemesis, monitor, controller), plus `extra` row batches."""
        parts = {c: list(self.context.get(c, [])) + [b[c] for b in extra] for c in COLUMNS}
        return _history(parts, self.source, self.warnings)


def _history(parts: dict[str, list[Any]], source: str, warnings: list[str]) -> History:
    """The History of rows in pieces (numpy arrays, or `Coded`), in invoke_index order."""
    cols: dict[str, Any] = {}
    for c in COLUMNS:
        if parts[c]:
            cols[c] = concat(parts[c])
        else:
            cols[c] = np.zeros(0, dtype=np.int64 if c in INT_COLS else
                               bool if c == "final" else object)
    order = np.argsort(cols["invoke_index"], kind="stable")
    if len(order) and not np.all(order[1:] > order[:-1]):
        cols = {c: a.take(order) if type(a) is Coded else a[order] for c, a in cols.items()}
    cols = {c: a.column() if type(a) is Coded else a for c, a in cols.items()}
    return History(ops=[], pairs=frame_from_columns(cols), source=source,
                   warnings=list(warnings))
