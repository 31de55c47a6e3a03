"""Where the streaming splitter cuts a long key into pieces (chaos.history.stream's module
doc): each row's piece, the cut at a quiescent block boundary, and the bookkeeping the
linearizable carry needs (which unknown-outcome values a later piece mentions, and the pieces
with a failed cas: one may observe any value)."""
from __future__ import annotations

from itertools import chain, compress, repeat
from operator import is_
from typing import TYPE_CHECKING, Any

import numpy as np

from chaos.checkers._frame import hashable
from chaos.history.columnar import INT64_MIN

if TYPE_CHECKING:
    from chaos.history.split import Split


def key_code(key: Any) -> Any:
    """A key as the splitter files it (hashable: a list key becomes a tuple)."""
    return key if type(key) in (str, int) else hashable(key)


#: values that are their own atom (`hashable` returns them as they are): most values of a
#: register history, tested by type first
_PLAIN = frozenset({int, str, float, bool, type(None)})


def _atoms(value: Any) -> list[Any]:
    """A row value and, for a list, its elements, hashable: what an op may mention."""
    if type(value) is list:
        if all(type(v) in _PLAIN for v in value):  # a cas's [expected, new]: no recursion
            return [tuple(value), *value]
        return [hashable(value)] + [hashable(v) for v in value]
    return [hashable(value)]


def _mentioned(seen: set[Any], xs: list[Any], tuples: bool = True) -> set[Any]:
    """The atoms (`_atoms`) of the values `xs` that are in `seen`. The usual values (plain
    ones, and lists of plain ones: a cas's [expected, new]) are sorted out by type and
    looked up in `seen` with C-level iterators, not a call per value: this runs over every
    row of a long key's pieces. `tuples`: whether `seen` may hold a tuple (a list's atom);
    when not, the lists themselves are not looked up, only their elements.

    First one C-level intersection: when every value is hashable (no list or dict: a
    register's written values and read results), each is its own atom."""
    try:
        return seen.intersection(xs)
    except TypeError:
        pass
    plain = _PLAIN
    types = list(map(type, xs))
    kinds = set(types)
    if kinds <= plain:
        return seen.intersection(xs)  # the elements of xs in seen, as compress would give
    out = seen.intersection(compress(xs, map(plain.__contains__, types)))
    lists = list(compress(xs, map(is_, types, repeat(list))))
    flat = list(chain.from_iterable(lists))
    if set(map(type, flat)) <= plain:
        out.update(compress(flat, map(seen.__contains__, flat)))
        if tuples:
            as_tuples = list(map(tuple, lists))
            out.update(compress(as_tuples, map(seen.__contains__, as_tuples)))
    else:
        for x in lists:
            out.update(a for a in _atoms(x) if a in seen)
    if not kinds <= plain | {list}:
        for x, t in zip(xs, types):
            if t not in plain and t is not list:
                out.update(a for a in _atoms(x) if a in seen)
    return out


class Pieces:
    """Which piece of its key each client row goes to, and where a key is cut (module doc)."""

    def __init__(self, split: Split, piece_ops: int, cuttable: frozenset[str]):
        self.split, self.piece_ops, self.cuttable = split, piece_ops, cuttable
        self.piece: dict[Any, int] = {}  # key -> current piece (absent: 0)
        self.rows: dict[Any, int] = {}  # key -> rows in its current piece
        self.uncut: set[Any] = set()  # keys with an f that cannot be carried across a cut
        self.info: dict[Any, set[Any]] = {}  # key -> values of its info rows, current piece
        self.closed: dict[Any, set[Any]] = {}  # the same, of its earlier pieces
        self.last: dict[Any, int] = {}  # key -> latest completion time in its current piece
        self.tupled: set[Any] = set()  # keys whose `closed` values hold a tuple

    def route(self, at: np.ndarray, keys: list[Any], fs: np.ndarray, types: np.ndarray,
              values: np.ndarray, results: np.ndarray, completed: np.ndarray,
              errors: np.ndarray | None = None) -> np.ndarray:
        """Each row's piece (int64); notes the rows per piece, unknown ops' values,
        observations. Row i's key is keys[at[i]] (`key_code`s); `errors`: the rows' errors
        (None: every failed cas counts as a tagged one).

        A key's piece changes only at a cut, between blocks, so within a block every row of
        a key goes to the same piece: the rows are handled a key at a time, with numpy over
        the key's rows, where a loop per row cost most of the reading of a register history.
        The outcome is the row-by-row rule's: a key meeting an f no carry covers is uncut
        from that row on (a Doubt when it was already cut), the rows before it counted."""
        n = len(at)
        out = np.zeros(n, dtype=np.int64)
        if not n:
            return out
        # one group per distinct key as a dict tells them (1 == 1.0 == True), in block order
        group: dict[Any, int] = {}
        gid = np.fromiter((group.setdefault(k, len(group)) for k in keys), dtype=np.int64,
                          count=len(keys))
        names = list(group)
        if len(names) == 1:
            slices = [(names[0], np.arange(n))]
        else:
            g_at = gid[at]
            order = np.argsort(g_at, kind="stable")
            bounds = np.flatnonzero(np.diff(g_at[order])) + 1
            slices = [(names[int(g_at[rows[0]])], rows) for rows in np.split(order, bounds)]
        for k, rows in slices:
            if k in self.uncut:
                continue
            f_k = fs[rows]
            if not set(f_k.tolist()) <= self.cuttable:
                first = next(i for i, f in enumerate(f_k.tolist()) if f not in self.cuttable)
                if self.piece.get(k, 0):
                    from chaos.history.split import Doubt
                    raise Doubt("a key cut into pieces has an op no carry covers")
                self._note(k, 0, rows[:first], fs, types, values, results, completed, errors)
                self.uncut.add(k)
                self.rows.pop(k, None)
                continue
            g = self.piece.get(k, 0)
            out[rows] = g
            self._note(k, g, rows, fs, types, values, results, completed, errors)
        return out

    def _note(self, k: Any, g: int, rows: np.ndarray, fs: np.ndarray, types: np.ndarray,
              values: np.ndarray, results: np.ndarray, completed: np.ndarray,
              errors: np.ndarray | None) -> None:
        """The bookkeeping of key `k`'s `rows` (block positions), all in its piece `g`."""
        if not len(rows):
            return
        before = self.rows.get(k, 0)
        self.rows[k] = before + len(rows)
        if g and not before:
            self.split.cut_keys[k] = g  # the key's piece g has rows: it continues there
        t1 = int(completed[rows].max())
        if t1 > self.last.get(k, INT64_MIN):
            self.last[k] = t1
        t_k = types[rows]
        info = t_k == "info"
        if info.any():
            mine = self.info.setdefault(k, set())
            for v in values[rows[info]].tolist():
                mine.update(_atoms(v))
        cas = fs[rows] == "cas"
        failed = (t_k == "fail") & cas
        if failed.any():  # observes "not the expected value" (Split)
            tagged, _ = self.split.failed_cas.get(k, (-1, -1))
            if errors is None or (errors[rows[failed]] == "compare-failed").any():
                tagged = g
            self.split.failed_cas[k] = (tagged, g)
        seen = self.closed.get(k)
        if seen:
            observed = self.split.observed
            tupled = k in self.tupled
            # a cas's [expected, new] apart: the other values and the results are usually
            # plain, looked up by one intersection (`_mentioned`)
            got = _mentioned(seen, results[rows].tolist(), tupled)
            if cas.all():
                got |= _mentioned(seen, values[rows].tolist(), tupled)
            else:
                got |= _mentioned(seen, values[rows[~cas]].tolist(), tupled)
                if cas.any():
                    got |= _mentioned(seen, values[rows[cas]].tolist(), tupled)
            for x in got:
                observed[(k, x)] = g

    def wants(self) -> bool:
        """Whether some key's piece is big enough to be cut at the next quiescent point."""
        return bool(self.waiting())

    def waiting(self) -> list[Any]:
        """The keys whose piece is big enough to be cut at the next quiescent point."""
        if not self.cuttable:
            return []
        return [k for k, n in self.rows.items() if n >= self.piece_ops]

    def cut(self, open_keys: set[Any], now: int) -> None:
        """At a block boundary (`now`: the block's last line's time, no later line is older):
        cut each big key none of whose ops is open and whose last completion is before
        `now`, so its next op is invoked strictly after every op of the piece completed."""
        for k, n in self.rows.items():
            if (n < self.piece_ops or k in open_keys
                    or self.last[k] >= now):
                continue
            g = self.piece[k] = self.piece.get(k, 0) + 1
            self.rows[k] = 0
            info = self.info.pop(k, ())
            self.closed.setdefault(k, set()).update(info)
            if any(type(x) is tuple for x in info):
                self.tupled.add(k)
            need = (g + 1) * self.split.base_shards
            if need > len(self.split.shard_rows):
                self.split.shard_rows += [0] * (need - len(self.split.shard_rows))
                self.split.n_shards = need
