"""Vectorising helpers shared by the checkers: value codes, key codes, segmented counting.

Checkers must judge a million ops in well under a second, so they turn keys and values into
integer codes once and then work on numpy arrays; these helpers are that common step.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd


def hashable(v: Any) -> Any:
    """A hashable stand-in for a JSON value (lists -> tuples, dicts -> sorted item tuples)."""
    if isinstance(v, list):
        return tuple(hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, hashable(x)) for k, x in v.items()))
    return v


def object_array(values: Iterable[Any], n: int | None = None) -> np.ndarray:
    """A 1-d object array of `values` (np.array would build 2-d arrays from lists)."""
    seq = values if isinstance(values, (list, tuple)) else list(values)
    arr = np.empty(len(seq) if n is None else n, dtype=object)
    arr[:] = seq
    return arr


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (0..n-1) and uniques of `values`; None is a value of its own, not NaN.

    Plain ints go through an int64 fast path; everything else (strings, None, lists) through
    the object path, with unhashable values replaced by hashable stand-ins.
    """
    if values.dtype != object:
        return pd.factorize(values)
    if len(values) and all(t is int for t in set(map(type, values))):
        try:
            codes, uniq = pd.factorize(values.astype(np.int64))
            return codes, object_array(uniq.tolist())
        except OverflowError:
            pass
    try:
        codes, uniq = pd.factorize(values, use_na_sentinel=False)
    except TypeError:
        codes, uniq = pd.factorize(object_array([hashable(v) for v in values]),
                                   use_na_sentinel=False)
    uniq = object_array([None if isinstance(u, float) and u != u else u for u in uniq])
    return codes, uniq


def flatten(lists: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(owner position, element) arrays for a sequence of lists (None counts as empty)."""
    lengths = np.fromiter((len(x) if x is not None else 0 for x in lists), dtype=np.int64,
                          count=len(lists))
    owner = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
    total = int(lengths.sum())
    flat = object_array(chain.from_iterable(x for x in lists if x), total)
    return owner, flat


def combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense codes for pairs (a[i], b[i]) of non-negative int codes."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    width = int(b.max()) + 1
    return pd.factorize(a.astype(np.int64) * width + b.astype(np.int64))[0]


class SegmentedTimes:
    """Sorted times grouped by an integer segment (a key), for vectorised per-key counting.

    `count_le(seg, t)` / `count_lt(seg, t)` answer, for arrays of segments and times at once,
    how many stored times of that segment are <= / < t. Times are replaced by their rank among
    the stored times, so segment and rank pack into one int64 without overflow.
    """

    def __init__(self, seg: np.ndarray, times: np.ndarray):
        self.uniq = np.unique(times)
        self.width = len(self.uniq) + 1
        rank = np.searchsorted(self.uniq, times, side="right")  # 1..U
        self.sorted = np.sort(seg.astype(np.int64) * self.width + rank)

    def _count(self, seg: np.ndarray, rank: np.ndarray) -> np.ndarray:
        base = seg.astype(np.int64) * self.width
        return (np.searchsorted(self.sorted, base + rank, side="right")
                - np.searchsorted(self.sorted, base, side="right"))

    def count_le(self, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._count(seg, np.searchsorted(self.uniq, t, side="right"))

    def count_lt(self, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._count(seg, np.searchsorted(self.uniq, t, side="left"))

    def count(self, seg: np.ndarray) -> np.ndarray:
        base = seg.astype(np.int64) * self.width
        return (np.searchsorted(self.sorted, base + self.width, side="left")
                - np.searchsorted(self.sorted, base, side="right"))
