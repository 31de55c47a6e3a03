"""Where the streaming splitter cuts a long key into pieces (chaos.history.stream's module
doc): each row's piece, the cut at a quiescent block boundary, and the bookkeeping the
linearizable carry needs (which unknown-outcome values a later piece mentions, and the pieces
with a failed cas: one may observe any value)."""
from __future__ import annotations

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

    def route(self, keys: list[Any], fs: list[Any], types: list[Any], values: list[Any],
              results: list[Any], completed: np.ndarray,
              errors: list[Any] | None = None) -> list[int]:
        """Each row's piece; notes the rows per piece, unknown ops' values, observations
        (`errors`: the rows' errors; None: every failed cas counts as a tagged one)."""
        out = []
        piece, rows, uncut, cuttable, last = (self.piece, self.rows, self.uncut, self.cuttable,
                                              self.last)
        observed, plain = self.split.observed, _PLAIN
        errs = errors if errors is not None else ["compare-failed"] * len(keys)
        for k, f, t, v, r, t1, e in zip(keys, fs, types, values, results, completed.tolist(),
                                        errs):
            if k in uncut:
                out.append(0)
                continue
            g = piece.get(k, 0)
            if f not in cuttable:
                if g:
                    from chaos.history.split import Doubt
                    raise Doubt("a key cut into pieces has an op no carry covers")
                uncut.add(k)
                rows.pop(k, None)
                out.append(0)
                continue
            out.append(g)
            rows[k] = rows.get(k, 0) + 1
            if g and not rows[k] - 1:
                self.split.cut_keys[k] = g  # the key's piece g has rows: it continues there
            if t1 > last.get(k, INT64_MIN):
                last[k] = t1
            if t == "info":
                self.info.setdefault(k, set()).update(_atoms(v))
            elif t == "fail" and f == "cas":  # observes "not the expected value" (Split)
                tagged, _ = self.split.failed_cas.get(k, (-1, -1))
                self.split.failed_cas[k] = (g if e == "compare-failed" else tagged, g)
            seen = self.closed.get(k)
            if seen:
                for x in (v, r):
                    if type(x) in plain:
                        if x in seen:
                            observed[(k, x)] = g
                        continue
                    for a in _atoms(x):
                        if a in seen:
                            observed[(k, a)] = g
        return out

    def wants(self) -> bool:
        """Whether some key's piece is big enough to be cut at the next quiescent point."""
        return bool(self.cuttable) and any(n >= self.piece_ops for n in self.rows.values())

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
            self.closed.setdefault(k, set()).update(self.info.pop(k, ()))
            need = (g + 1) * self.split.base_shards
            if need > len(self.split.shard_rows):
                self.split.shard_rows += [0] * (need - len(self.split.shard_rows))
                self.split.n_shards = need
