"""What the stale-reads checker needs from a key's earlier pieces (chaos.checkers.sharded).

A long register key is read in pieces cut at quiescent points (chaos.history.stream). A read
in a later piece may return a value written in an earlier one, and whether it is stale
depends on that write's completion and on the ok writes invoked after it (stale-reads' rule:
some ok write completed before the read began and was invoked after the read's write
completed). Those are earlier writes, so each piece of a key is checked with every earlier
write of the key beside its own ops (`with_writes`): the rule then sees exactly the ops it
would see in the whole history (later pieces' writes are invoked after the read completed,
so they never make it stale). A write is kept as one row of plain columns, not the whole
History; it is what the checker must remember by definition: any value written may still be
read.

Counts stay those of the whole history: the carried rows are not counted again as writes
(`carried_writes`), and a key carried in is not counted again as a key.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from chaos.checkers._frame import hashable
from chaos.history.model import COLUMNS, History, frame_from_columns

WRITE_FS = ("write", "cas")
#: columns the stale-reads rule never reads of a write: not kept (a meta dict per row adds up)
BLANK = ("meta", "result", "error")


class WriteCarry:
    """Per key that continues in a later piece: its write rows so far (COLUMNS order)."""

    def __init__(self) -> None:
        self.rows: dict[Any, list[dict[str, np.ndarray]]] = {}

    def with_writes(self, shard: History, keys: set[Any]) -> tuple[History, int, int]:
        """The shard plus the carried writes of its `keys` (those carried in); (History, number
        of carried rows counted as writes by stale-reads, number of keys carried in)."""
        parts = [b for k in keys for b in self.rows.get(k, [])]
        if not parts:
            return shard, 0, 0
        cols = {c: np.concatenate([b[c] for b in parts]) for c in COLUMNS}
        n_writes = int((cols["type"] != "fail").sum())
        pairs = shard.pairs
        both = {c: np.concatenate([cols[c], pairs[c].to_numpy()]) for c in COLUMNS}
        order = np.argsort(both["invoke_index"], kind="stable")
        both = {c: a[order] for c, a in both.items()}
        carried_in = sum(1 for k in keys if k in self.rows)
        return (History(ops=[], pairs=frame_from_columns(both), source=shard.source,
                        warnings=list(shard.warnings)), n_writes, carried_in)

    def keep(self, shard: History, continuing: set[Any]) -> None:
        """Remember the write rows of the keys in `continuing` (they have a later piece)."""
        if not continuing:
            return
        pairs = shard.pairs
        f = pairs["f"].to_numpy()
        codes = np.empty(len(f), dtype=object)
        codes[:] = [hashable(k) for k in pairs["key"].to_numpy().tolist()]
        sel = np.flatnonzero(np.isin(f, WRITE_FS) & np.array(
            [k in continuing for k in codes.tolist()], dtype=bool))
        if not len(sel):
            return
        cols = {c: pairs[c].to_numpy()[sel] if c not in BLANK else
                np.full(len(sel), None, dtype=object) for c in COLUMNS}
        codes = codes[sel]
        for k in set(codes.tolist()):
            mine = np.flatnonzero(np.fromiter((c == k for c in codes.tolist()), dtype=bool,
                                              count=len(codes)))
            self.rows.setdefault(k, []).append({c: a[mine] for c, a in cols.items()})
