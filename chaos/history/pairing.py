"""Pairing a history's invokes with their completions, block by block, and spilling each
operation to its shard (chaos.history.stream reads the blocks; chaos.history.ranges runs one
`Pairer` per byte range and joins what crosses the boundaries)."""
from __future__ import annotations

from typing import Any, BinaryIO, Sequence

import numpy as np

from chaos.checkers._frame import factorize, object_array
from chaos.history.columnar import INT64_MIN, Columns, _pointers
from chaos.history.model import COLUMNS, OPEN
from chaos.history.pieces import Pieces, key_code
from chaos.history.spill import code_columns, dump_batch
from chaos.history.split import INT_COLS, Doubt, Split

_TYPE_NAMES = np.array(["invoke", "ok", "fail", "info"], dtype=object)
_KEY_TYPES = frozenset({str, int})  # keys `key_code` returns as they are
_NO_KEY = object()  # a key equal to no other
#: a pair's columns taken from its invoke line's field of the same name
_FROM_INVOKE = frozenset({"process", "f", "key", "value"})
#: ... and from its completion line's field (column -> field)
_FROM_COMPLETION = {"result": "value", "meta": "meta", "error": "error"}
#: the columns the routing of client rows reads (`_emit`)
_ROUTED = ("f", "key", "type", "value", "result", "complete_time", "error")


class Pairer:
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

    def columns(self, cols: Columns) -> None:
        """Pair the next block, as columns whose process and f codes are this pairer's
        (`procs`, `fs`): parsed by orjson (chaos.history.stream) or DuckDB
        (chaos.history.duck)."""
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
        final = cols.final

        def take(pos: np.ndarray | None, names: Sequence[str] = COLUMNS
                 ) -> dict[str, np.ndarray]:
            """The columns `names` of the pairs at positions `pos` (None: all, in order),
            indexed straight from the block's columns (no copy of the pairs first)."""
            i, c = (inv, cd) if pos is None else (inv[pos], cd[pos])
            out: dict[str, np.ndarray] = {}
            for name in names:
                if name in _FROM_INVOKE:
                    out[name] = obj[name][i]
                elif name in _FROM_COMPLETION:
                    out[name] = obj[_FROM_COMPLETION[name]][c]
                elif name == "type":
                    out[name] = _TYPE_NAMES[cols.typ[c]]
                elif name in ("invoke_time", "complete_time"):
                    out[name] = times[i if name == "invoke_time" else c]
                elif name in ("invoke_index", "complete_index"):
                    out[name] = index[i if name == "invoke_index" else c]
                elif name == "node":  # the completion's, else the invoke's
                    node = obj["node"][c]
                    no_node = _pointers(node) == id(None)
                    node[no_node] = obj["node"][i[no_node]]
                    out[name] = node
                else:
                    assert name == "final"
                    out[name] = final[i] | final[c]
            return out

        for i in orphan_pos:
            self.orphans[obj["process"][i]] = completion(cols, i)
        self._emit(take, len(inv), self._clients()[cols.pcode[inv]])
        extra = [join(rec, completion(cols, i)) for rec, i in cross]
        if extra:
            self._emit_rows(extra)
        open_ = self.open
        for p, j in list(open_.items()):  # still open: carry the invoke's own fields
            if type(j) is int:
                open_[p] = (cols.fcode[j], obj["process"][j], obj["f"][j], obj["key"][j],
                            obj["value"][j], int(times[j]), int(index[j]), obj["node"][j],
                            bool(cols.final[j]))
        if self.pieces.cuttable:
            self.pieces.cut({key_code(rec[3]) for rec in open_.values()}, self.last_time)

    def next_cut(self, cols: Columns) -> int | None:
        """Where to end the next slice of `cols` while keys wait for their cut
        (`Pieces.waiting`): just after the first line at which one of them is quiescent as
        `Pieces.cut` judges it at a slice's end (none of its ops open; its last completion
        older than that line's time, so every later op is invoked strictly after it). None
        when no line of the block is, or a waiting key is not a str or int: the block is
        then paired whole (and cut at its end where it can be).

        Only a choice of where to slice, found with numpy over the block (a slice costs a
        few milliseconds, so slicing every 1,024 lines to look for the point cost ~8% of
        reading a register history): `Pieces.cut` decides, as at any slice's end. A
        completion's key is its invoke's: the line before it of the same process (each
        process alternates invoke, completion), or the invoke carried open into the block."""
        waiting = self.pieces.waiting()
        n = cols.n
        if not waiting or n < 2 or not all(type(k) in _KEY_TYPES for k in waiting):
            return None
        is_inv = cols.typ == 0
        keys = cols.obj["key"]
        pc = cols.pcode
        order = np.argsort(pc, kind="stable")
        first = np.ones(n, dtype=bool)
        first[1:] = pc[order[1:]] != pc[order[:-1]]
        prev = np.zeros(n, dtype=np.int64)  # the line before, of the same process
        prev[order[1:]] = order[:-1]
        has_prev = np.empty(n, dtype=bool)
        has_prev[order] = ~first
        carried = {int(p): key_code(rec[3]) for p, rec in self.open.items()
                   if type(rec) is tuple and type(rec[3]) in _KEY_TYPES}
        starts = [i for i in order[first].tolist() if not is_inv[i]]
        times = cols.time
        end = n
        for k in waiting:
            inv_k = is_inv & (keys == k)
            done_k = ~is_inv & has_prev & inv_k[prev]
            for i in starts:
                if carried.get(int(pc[i]), _NO_KEY) == k:
                    done_k[i] = True
            open_k = np.cumsum(inv_k, dtype=np.int64) - np.cumsum(done_k, dtype=np.int64)
            open_k += sum(1 for c in carried.values() if c == k)
            last = np.where(done_k, np.arange(n), -1)
            np.maximum.accumulate(last, out=last)
            last_t = np.where(last >= 0, times[last], self.pieces.last.get(k, INT64_MIN))
            quiet = np.flatnonzero(((open_k == 0) & (last_t < times))[:end])
            if len(quiet):
                end = int(quiet[0]) + 1
        return end if end < n else None

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
                    self._emit_rows(extra)
        finally:
            for fh in self.files.values():
                fh.close()

    def _clients(self) -> np.ndarray:
        """Whether each process code (`procs`) is a client's (an integer process)."""
        known = self._client_codes
        if len(known) < len(self.procs):
            known += [type(p) is int for p in list(self.procs)[len(known):]]
        return np.array(known, dtype=bool)

    def _emit_rows(self, extra: list[list[Any]]) -> None:
        """Spill rows given as lists (COLUMNS order) to their shards (see `_emit`)."""
        client = np.fromiter((type(r[0]) is int for r in extra), dtype=bool, count=len(extra))
        add = {c: np.array([r[k] for r in extra], dtype=np.int64 if c in INT_COLS else bool)
               if c in INT_COLS or c == "final" else object_array([r[k] for r in extra])
               for k, c in enumerate(COLUMNS)}

        def take(pos: np.ndarray | None, names: Sequence[str] = COLUMNS
                 ) -> dict[str, np.ndarray]:
            return {c: add[c] if pos is None else add[c][pos] for c in names}
        self._emit(take, len(extra), client)

    def _emit(self, take: Any, n: int, client: np.ndarray) -> None:
        """Spill `n` rows to their shards: take(positions, names) gives their columns
        (chaos.history.model.COLUMNS; positions None: all in order); `client`: which rows
        are client ops. The rows are taken once, already in shard order."""
        if not n:
            return
        self.split.ops += n
        shard = np.full(n, -1, dtype=np.int64)
        if client.any():
            sel = np.flatnonzero(client)
            need = take(sel, _ROUTED if self.pieces.cuttable else ("f", "key"))
            self.split.client_fs.update(set(need["f"].tolist()))
            n_shards = self.split.base_shards or self.split.n_shards
            codes, at, keys = self._shards(need["key"], n_shards)
            shard[sel] = codes
            if self.pieces.cuttable:
                shard[sel] += n_shards * self.pieces.route(
                    at, keys, need["f"], need["type"], need["value"], need["result"],
                    need["complete_time"], need["error"])
            del need
        # one stable sort by shard, then each shard's rows are a slice (not a mask per shard)
        order = np.argsort(shard, kind="stable")
        ss = shard[order]
        cuts = np.flatnonzero(ss[1:] != ss[:-1]) + 1
        starts, ends = [0, *cuts.tolist()], [*cuts.tolist(), n]
        rows = take(order if len(starts) > 1 else None)
        coded = code_columns(rows) if len(starts) > 1 or ss[0] >= 0 else {}
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
            dump_batch(fh, part, coded if b - a == n else
                       {c: k.slice(a, b) for c, k in coded.items()})

    def _shards(self, keys: np.ndarray, n_shards: int
                ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """Each client row's shard (of its key's first piece), and the rows' keys as the
        splitter files them (`key_code`): row i's is the list's at[i]. Each distinct key (as
        a dict tells them: 1 == 1.0 == true) is looked up once (`factorize`)."""
        ks = self.key_shard
        at, uniques = factorize(keys)  # a list or dict key by its hashable stand-in
        shard_of = np.empty(len(uniques), dtype=np.int64)
        coded_u = [k if type(k) in _KEY_TYPES else key_code(k) for k in uniques.tolist()]
        for j, k in enumerate(coded_u):
            s = ks.get(k)
            if s is None:
                s = ks[k] = (len(ks) if self.spread else hash(k)) % n_shards
            shard_of[j] = s
        return shard_of[at], at, coded_u


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
