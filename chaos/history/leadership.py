"""Leadership intervals of a history: who claimed to lead, in which term, from when to when.

The one home of this rule: the dual-leaders checker judges these intervals, the explanations
name them, and the report draws them, so the picture can never contradict the verdict.

Leadership comes from the monitor's observations (process "monitor", f "status", `node` = the
node asked, ok result {"role", "term", "leader", ...}). A node holds a leadership interval
from the completion of the first observation in which it says it is leader (in term t) until
the invoke of the next observation of that node that says otherwise: another role, another
term, or no answer at all (info). No answer ends the interval because the monitor is out of
band: a node that does not answer it is killed or paused, and cannot act as leader then.
The gap between the last "leader" answer and the next observation counts as leadership (the
node claimed it and nothing says it stopped); an interval whose node was never observed
again ends at the last monitor observation of the history (not at infinity).

Terms may be any JSON value a target reports (DESIGN §7a: an int, a string, a list such as
[epoch, index], or None for a system without terms). They are compared for equality through
`term_key` (lists become tuples), never coerced to int, and reported as the target gave them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from chaos.history.model import OPEN, History


@dataclass(frozen=True)
class LeaderInterval:
    """A node's continuous claim of leadership in one term (times in ns)."""

    node: Any
    term: Any
    start: int
    end: int
    ops: tuple[int, ...]   # history indexes of the observation that opened the interval


@dataclass(frozen=True)
class LeaderOverlap:
    """Two different nodes claiming leadership at once: `a` started first; [start, end]."""

    a: LeaderInterval
    b: LeaderInterval
    start: int
    end: int

    @property
    def same_term(self) -> bool:
        """Both in one term, or both without a term: election safety broken."""
        return term_key(self.a.term) == term_key(self.b.term)


def term_key(term: Any) -> Any:
    """A hashable stand-in for a term of any JSON shape (lists -> tuples, dicts -> items),
    so equal terms compare equal however the target spells them."""
    if isinstance(term, (list, tuple)):
        return tuple(term_key(x) for x in term)
    if isinstance(term, dict):
        return tuple(sorted((str(k), term_key(v)) for k, v in term.items()))
    return term


def _codes(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Integer codes for `values` and the first original value of each code (None included).

    pandas' hash factorize for the usual hashable values; a dict over term_key for the rest
    (list terms), so the original values, not stand-ins, are what the intervals report.
    """
    try:
        codes, uniq = pd.factorize(values)
        firsts = list(uniq)
        if (codes < 0).any():  # None is a value of its own
            codes = np.where(codes < 0, len(firsts), codes)
            firsts.append(None)
        return codes.astype(np.int64), firsts
    except TypeError:
        seen: dict[Any, int] = {}
        firsts = []
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            k = term_key(v)
            c = seen.get(k)
            if c is None:
                c = seen[k] = len(firsts)
                firsts.append(v)
            out[i] = c
        return out, firsts


def monitor_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """The monitor's status observations (process "monitor", f "status")."""
    # isin hashes; == on an object column compares in Python (5x slower at a million ops)
    return pairs[(pairs["process"].isin(("monitor",)) & pairs["f"].isin(("status",))).to_numpy()]


def _field(res: np.ndarray, name: str) -> np.ndarray:
    out = np.empty(len(res), dtype=object)
    out[:] = [r.get(name) if isinstance(r, dict) else None for r in res]
    return out


def leader_intervals(history: History) -> list[LeaderInterval]:
    """Every leadership interval the monitor saw, ordered by start (rules in the module doc)."""
    mon = monitor_frame(history.pairs)
    if mon.empty:
        return []
    res = mon["result"].to_numpy()
    ok = (mon["type"] == "ok").to_numpy()
    leader = ok & (_field(res, "role") == "leader")
    node_codes, node_values = _codes(mon["node"].to_numpy())
    term_codes, term_values = _codes(_field(res, "term"))
    inv = mon["invoke_time"].to_numpy()
    cmp = mon["complete_time"].to_numpy()
    order = np.lexsort((mon["invoke_index"].to_numpy(), inv, node_codes))
    nd, ld, tc = node_codes[order], leader[order], term_codes[order]
    s_inv, s_cmp = inv[order], cmp[order]
    prev_same = np.zeros(len(order), dtype=bool)
    prev_same[1:] = (nd[1:] == nd[:-1]) & ld[:-1] & (tc[1:] == tc[:-1])
    starts = np.flatnonzero(ld & ~prev_same)
    if not len(starts):
        return []
    # the run of each start ends at the first following observation that is not the same claim
    breaks = np.flatnonzero(~(ld & prev_same))  # positions that do not continue a run
    nxt = np.searchsorted(breaks, starts, side="right")
    done = cmp[cmp != OPEN]
    horizon = int(max(done.max() if len(done) else 0, inv.max()))
    inv_idx = mon["invoke_index"].to_numpy()[order]
    cmp_idx = mon["complete_index"].to_numpy()[order]
    out: list[LeaderInterval] = []
    for s, k in zip(starts.tolist(), nxt.tolist()):
        b = int(breaks[k]) if k < len(breaks) else -1
        start = int(s_cmp[s])
        if b >= 0 and nd[b] == nd[s]:
            end = int(s_inv[b])
        else:  # never observed again: the last time we know anything
            last = s + int(np.searchsorted(nd[s:], nd[s], side="right")) - 1
            end = max(int(s_cmp[last]), horizon)
        ops = tuple(int(x) for x in (inv_idx[s], cmp_idx[s]) if x >= 0)
        out.append(LeaderInterval(node_values[nd[s]], term_values[tc[s]], start,
                                  max(end, start), ops))
    out.sort(key=lambda iv: (iv.start, iv.end))
    return out


def leaders_at(intervals: Sequence[LeaderInterval], t: int) -> list[LeaderInterval]:
    """The intervals that contain time t."""
    return [iv for iv in intervals if iv.start <= t <= iv.end]


def leader_overlaps(intervals: Sequence[LeaderInterval]) -> list[LeaderOverlap]:
    """Every pair of intervals of different nodes that overlap for a positive time, by start
    (a sweep: `intervals` must be ordered by start, as leader_intervals returns them)."""
    out: list[LeaderOverlap] = []
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if b.start > a.end:
                break
            if b.node != a.node and min(a.end, b.end) > b.start:
                out.append(LeaderOverlap(a, b, b.start, min(a.end, b.end)))
    return out
