"""What the stale-reads checker needs from a key's earlier pieces (chaos.checkers.sharded).

A long register key is read in pieces cut at quiescent points (chaos.history.stream). A read
in a later piece may return a value written in an earlier one. Stale-reads' rule for a read
r of value v: with w the write of v (the latest-completing one) and m the earliest
completion of an ok write invoked after w completed, r is stale when m < r's invoke. Every
op of an earlier piece completed before r was invoked, so from the earlier pieces the rule
needs exactly: w itself (for each value r reads), the ok write achieving m among the earlier
writes invoked after w completed, the earliest-completing ok write (for reads of the initial
value), and failed writes of the values read (counted apart). `WriteCarry` keeps every
earlier write of the key compactly (numbers and codes, about 70 bytes a write: any value
may still be read, so that much is kept by definition) and hands each piece those few rows
(`with_writes`): the rule then finds the same w and m as in the whole history (later pieces'
writes are invoked after r completed, so they never make r stale).

Counts stay those of the whole history: the carried rows are not counted again as writes,
and a key stale-reads counted in an earlier piece is not counted again as a key (whether or
not it had writes there: a key read in two pieces and never written is one key).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from chaos.checkers._frame import factorize, hashable, int_array
from chaos.checkers.stale_reads import _written
from chaos.history.model import COLUMNS, OPEN, History, frame_from_columns

WRITE_FS = ("write", "cas")
_NUM = ("invoke_time", "complete_time", "invoke_index", "complete_index")
_CODED = ("f", "node")  # few distinct values: stored as codes into a shared table
TYPES = np.array(["ok", "fail", "info"], dtype=object)
_TYPE_CODE = {"ok": 0, "fail": 1, "info": 2}


class _Writes:
    """One key's earlier writes: int64 columns, values as int64 when they all are ints."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.cols: dict[str, np.ndarray] | None = None

    def add(self, part: dict[str, np.ndarray]) -> None:
        self.parts.append(part)
        self.cols = None

    def all(self) -> dict[str, np.ndarray]:
        if self.cols is None:
            self.cols = {c: np.concatenate([p[c] for p in self.parts]) for c in self.parts[0]}
            self.parts = [self.cols]
        return self.cols


class WriteCarry:
    """Per key that continues in a later piece: its writes so far, compact (module doc)."""

    def __init__(self) -> None:
        self.keys: dict[Any, _Writes] = {}
        self.table: list[Any] = []  # code -> f / type / node value
        self.codes: dict[Any, int] = {}
        #: the keys of cut keys' pieces stale-reads has counted (writes, ok reads)
        self.counted: set[Any] = set()

    def _code(self, values: np.ndarray) -> np.ndarray:
        """Each value's code in the shared table (a dict tells values apart), looked up
        once per distinct value."""
        at, uniques = factorize(values)
        table = np.empty(len(uniques), dtype=np.int32)
        for j, v in enumerate(uniques.tolist()):
            c = self.codes.get(v)
            if c is None:
                c = self.codes[v] = len(self.table)
                self.table.append(v)
            table[j] = c
        return table[at]

    def keep(self, shard: History, continuing: set[Any]) -> None:
        """Remember the write rows of the keys in `continuing` (they have a later piece)."""
        if not continuing:
            return
        pairs = shard.pairs
        f = pairs["f"].to_numpy()
        names, group = _key_groups(pairs["key"].to_numpy())
        going = np.array([k in continuing for k in names], dtype=bool)
        mine = np.isin(f, WRITE_FS) & going[group]
        sel = np.flatnonzero(mine)
        if not len(sel):
            return
        # the value written (a cas [expected, new] writes new): all the rule reads of a write
        value = _written(pairs["value"].to_numpy()[sel], f[sel])
        part: dict[str, Any] = {c: pairs[c].to_numpy()[sel].astype(np.int64) for c in _NUM}
        for c in _CODED:
            part[c] = self._code(pairs[c].to_numpy()[sel])
        typ = pairs["type"].to_numpy()[sel]
        part["type"] = np.where(typ == "ok", 0, np.where(typ == "fail", 1, 2)).astype(np.int8)
        ints = int_array(value) if len(value) else None
        part["value"] = ints if ints is not None else value
        at = group[sel]
        for g in np.unique(at).tolist():
            rows = np.flatnonzero(at == g)
            w = self.keys.setdefault(names[g], _Writes())
            piece = {c: a[rows] for c, a in part.items()}
            if w.parts and w.parts[0]["value"].dtype != piece["value"].dtype:
                piece["value"] = piece["value"].astype(object)
                w.parts = [{**p, "value": p["value"].astype(object)} for p in w.parts]
                w.cols = None
            w.add(piece)

    def with_writes(self, shard: History, keys: set[Any]) -> tuple[History, int, int]:
        """The shard plus, for each of its `keys` carried in, the earlier writes its reads
        need (module doc); (History, carried rows stale-reads counts as writes, keys it
        counts here that it counted in an earlier piece)."""
        pairs = shard.pairs
        f = pairs["f"].to_numpy()
        names, group = _key_groups(pairs["key"].to_numpy())
        typ = pairs["type"].to_numpy()
        result = pairs["result"].to_numpy()
        is_read = (f == "read") & (typ == "ok")
        # the keys stale-reads counts here: of a write or cas (any type) or an ok read (the
        # carried rows below go only to keys with an ok read here)
        counts = np.unique(group[is_read | np.isin(f, WRITE_FS)]).tolist()
        here = {names[g] for g in counts} & set(keys)
        n_keys = len(here & self.counted)
        self.counted |= here
        ghosts: list[dict[str, np.ndarray]] = []
        number = {k: g for g, k in enumerate(names)}
        reads = np.flatnonzero(is_read)
        for k in keys:
            w = self.keys.get(k)
            if w is None:
                continue
            at = number.get(k, -1)
            rows = reads[group[reads] == at].tolist()
            read = result[rows].tolist()
            picked = _needed(w.all(), read)
            if len(picked):
                cols = w.all()
                ghosts.append({c: a[picked] for c, a in cols.items()} | {
                    "key": np.array([pairs["key"].to_numpy()[rows[0]] if rows else k] *
                                    len(picked), dtype=object)})
        if not ghosts:
            return shard, 0, n_keys
        g = {c: np.concatenate([x[c] for x in ghosts]) for c in ghosts[0]}
        n = len(g["key"])
        table = np.array(self.table + [None], dtype=object)
        extra: dict[str, np.ndarray] = {}
        for c in COLUMNS:
            if c in _NUM:
                extra[c] = g[c]
            elif c in _CODED:
                extra[c] = table[g[c]]
            elif c == "type":
                extra[c] = TYPES[g[c]]
            elif c == "final":
                extra[c] = np.zeros(n, dtype=bool)
            elif c == "key":
                extra[c] = g[c]
            elif c == "value":  # as the op had it, but a cas's expected value is not kept
                extra[c] = g[c].astype(object)
                cas = np.flatnonzero(extra["f"] == "cas")
                for i in cas.tolist():
                    extra[c][i] = [None, extra[c][i]]
            else:
                extra[c] = np.full(n, None, dtype=object)
        n_writes = int((extra["type"] != "fail").sum())
        both = {c: np.concatenate([extra[c], pairs[c].to_numpy()]) for c in COLUMNS}
        order = np.argsort(both["invoke_index"], kind="stable")
        both = {c: a[order] for c, a in both.items()}
        return (History(ops=[], pairs=frame_from_columns(both), source=shard.source,
                        warnings=list(shard.warnings)), n_writes, n_keys)


def _needed(cols: dict[str, np.ndarray], read: list[Any]) -> np.ndarray:
    """Rows of one key's earlier writes that reads of `read` values need: the writes of those
    values (any type), for each the earliest-completing ok write invoked after it completed,
    and the earliest-completing ok write of all when a read returned the initial value."""
    if not read:
        return np.zeros(0, dtype=np.int64)
    value = cols["value"]
    initial = any(v is None for v in read)
    wanted = [v for v in read if v is not None]
    if value.dtype == object:
        want = {hashable(v) for v in wanted}
        of_read = np.fromiter((hashable(v) in want for v in value.tolist()), dtype=bool,
                              count=len(value))
    else:
        plain = int_array(wanted)  # the usual reads: ints (bools among them are ints too)
        ints = (plain.tolist() if plain is not None else
                [i for i in map(_as_int64, wanted) if i is not None])
        of_read = np.isin(value, np.array(ints, dtype=np.int64)) if ints else np.zeros(
            len(value), dtype=bool)
    picked = np.flatnonzero(of_read)
    types = cols["type"]
    ok = np.flatnonzero(types == 0)
    if not len(ok):
        return picked
    # ok writes by invoke time; for each position, where the minimum completion of it and
    # every later one is reached (the earliest-completing ok write invoked from there on)
    inv = cols["invoke_time"][ok]
    srt = np.argsort(inv, kind="stable")
    s_inv, s_row = inv[srt], ok[srt]
    rev = cols["complete_time"][s_row][::-1]
    n = len(rev)
    at_min = rev == np.minimum.accumulate(rev)
    last = np.maximum.accumulate(np.where(at_min, np.arange(n), 0))
    arg = (n - 1 - last)[::-1]  # position (in s_row) of the suffix minimum
    more = []
    if initial:
        more.append(s_row[arg[:1]])
    mine = picked[(types[picked] == 0) & (cols["complete_time"][picked] != OPEN)]
    pos = np.searchsorted(s_inv, cols["complete_time"][mine], side="right")
    more.append(s_row[arg[pos[pos < n]]])
    return np.unique(np.concatenate([picked, *more]))


def _as_int64(v: Any) -> int | None:
    """The int64 a read value equals, as stale-reads matches values (1 == 1.0 == true: a
    read of 1.0 or true is a read of the write of 1), or None (no int64 write can be it)."""
    if type(v) is float and v.is_integer():
        v = int(v)
    if type(v) in (int, bool) and -(2 ** 63) <= v < 2 ** 63:
        return int(v)
    return None


def _key_groups(keys: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The distinct keys of `keys` as the carry files them (`hashable`; equal as a dict tells
    them: 1 == 1.0 == true; None a key of its own), and each row's position among them: one
    lookup per distinct key, not per row."""
    at, uniques = factorize(keys)
    number: dict[Any, int] = {}
    of_unique = np.fromiter((number.setdefault(hashable(u), len(number))
                             for u in uniques.tolist()), dtype=np.int64, count=len(uniques))
    return list(number), of_unique[at]
