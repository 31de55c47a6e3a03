"""The in-memory history: raw ops plus one DataFrame row per operation (invoke paired once).

Every checker reads `History.pairs`; nobody pairs invokes and completions again.

Row contract of `History.pairs` (one row per operation, ordered by `invoke_index`):

    process         object   int for clients, "nemesis", "monitor", "controller"
    f               object   "read", "write", "cas", "add", "read-set", "status",
                             "start-partition", ...
    key             object   the op's key, or None
    value           object   the invoke's value (write value, [expected, new] for cas,
                             element for add)
    result          object   the completion's value (value read on ok read, status dict for monitor)
    type            object   completion type: "ok", "fail", "info"; "info" too for an invoke that
                             never completed (a crash; it may still have happened)
    invoke_time     int64    ns since test start
    complete_time   int64    ns; OPEN (= 2**63-1) when the op never completed
    invoke_index    int64    the invoke line's `index`
    complete_index  int64    the completion line's `index`, -1 when never completed
    node            object   completion's node if it has one, else the invoke's, else None
    meta            object   completion's `meta` dict (e.g. {"term": 4}) or None
    final           bool     `final: true` on the op (set workload final reads)
    error           object   completion's `error` field or None

Times and indexes are integers so checkers can vectorise with numpy.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

OPEN = np.iinfo(np.int64).max  # complete_time of an operation that never completed

COLUMNS = [
    "process", "f", "key", "value", "result", "type", "invoke_time", "complete_time",
    "invoke_index", "complete_index", "node", "meta", "final", "error",
]

Op = dict[str, Any]

INT_COLUMNS = ("invoke_time", "complete_time", "invoke_index", "complete_index")


def make_pairs_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Build the pairs DataFrame from row lists in COLUMNS order, with exact dtypes.

    Object columns stay object (no NaN for None, no float for int values): checkers compare
    values for equality, so 1 must stay 1 and None must stay None.
    """
    cols = list(zip(*rows)) if rows else [() for _ in COLUMNS]
    data: dict[str, np.ndarray] = {}
    for name, col in zip(COLUMNS, cols):
        if name in INT_COLUMNS:
            data[name] = np.fromiter(col, dtype=np.int64, count=len(col))
        elif name == "final":
            data[name] = np.fromiter(col, dtype=bool, count=len(col))
        else:
            arr = np.empty(len(col), dtype=object)
            arr[:] = col
            data[name] = arr
    return frame_from_columns(data)


def frame_from_columns(data: dict[str, np.ndarray]) -> pd.DataFrame:
    """The pairs DataFrame over the given column arrays (COLUMNS, with the contract's dtypes).

    The arrays are used as they are, not copied: a copy of an object column touches every
    object again, which for a million-row history costs more than building the columns.
    Object columns are wrapped as object Series, else pandas 3 would infer "string".
    """
    cols: dict[str, Any] = {}
    for name in COLUMNS:
        arr = data[name]
        cols[name] = pd.Series(arr, dtype=object, copy=False) if arr.dtype == object else arr
    return pd.DataFrame(cols, columns=COLUMNS, copy=False)


#: the named (non-client) processes chaos itself records: faults, status polls, and the
#: controller's own observations (chaos.liveness: "cluster-down")
NAMED_PROCESSES = ("nemesis", "monitor", "controller")


def client_mask(process: pd.Series) -> np.ndarray:
    """True for client ops (integer process ids), vectorised for the usual case.

    Fast paths: a column of integers only (a shard of a history read in shards holds client
    ops only) is confirmed by one pass of pandas' type inference; else drop the named
    processes with a hash lookup, then let pandas confirm the rest are all integers; only an
    unusual history pays for a per-op type check.
    """
    if len(process) and infer_dtype(process.to_numpy(), skipna=False) == "integer":
        return np.ones(len(process), dtype=bool)
    mask = (~process.isin(NAMED_PROCESSES) & process.notna()).to_numpy()
    if not mask.any() or infer_dtype(process[mask], skipna=False) == "integer":
        return mask
    return np.fromiter((isinstance(p, (int, np.integer)) and not isinstance(p, bool)
                        for p in process), dtype=bool, count=len(process))


@dataclass
class History:
    """A parsed history. `ops` are the lines in file order; `pairs` pairs them (see module doc)."""

    ops: list[Op]
    pairs: pd.DataFrame
    source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_ops(cls, ops: Iterable[Op], source: str | None = None,
                 warnings: list[str] | None = None) -> "History":
        """Pair invokes with completions by `process` (no validation: see chaos.history.reader).

        An op whose completion is missing becomes type "info" with complete_time OPEN.
        A completion with no open invoke is ignored here; the validating reader rejects it.
        Ops without an "index" get their position as index; without "time", the index.
        """
        ops = list(ops)
        rows: list[list[Any]] = []
        open_by_process: dict[Any, int] = {}
        for pos, op in enumerate(ops):
            idx = op.get("index", pos)
            t = op.get("time", idx)
            proc = op.get("process")
            if op.get("type") == "invoke":
                open_by_process[proc] = len(rows)
                rows.append([proc, op.get("f"), op.get("key"), op.get("value"), None, "info",
                             t, OPEN, idx, -1, op.get("node"), None, bool(op.get("final", False)),
                             None])
            else:
                r = open_by_process.pop(proc, None)
                if r is None:
                    continue
                row = rows[r]
                row[4] = op.get("value")
                row[5] = op.get("type")
                row[7] = t
                row[9] = idx
                if op.get("node") is not None:
                    row[10] = op.get("node")
                row[11] = op.get("meta")
                row[12] = row[12] or bool(op.get("final", False))
                row[13] = op.get("error")
        return cls(ops=ops, pairs=make_pairs_frame(rows), source=source,
                   warnings=list(warnings or []))

    @property
    def n_ops(self) -> int:
        """How many operations (pairs); chaos.checkers.sharded.Digest has the same field."""
        return len(self.pairs)

    # Convenience views; each is a cheap boolean filter on `pairs`.
    def client(self) -> pd.DataFrame:
        """Client operations (integer process ids)."""
        return self.pairs[client_mask(self.pairs["process"])]

    def nemesis(self) -> pd.DataFrame:
        """Fault operations (process "nemesis")."""
        return self.pairs[self.pairs["process"] == "nemesis"]

    def monitor(self) -> pd.DataFrame:
        """Status observations (process "monitor")."""
        return self.pairs[self.pairs["process"] == "monitor"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, as it was after. For the hot paths
    that make millions of small objects none of which is in a cycle (parsing, pairing,
    loading a shard, the linearizable search): each collection those allocations trigger
    would walk them all again, for nothing (measured: half a parse's time, 2.7x a search's).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
