"""Fault windows of a history: which nemesis ops open and close them, and the windows themselves.

The one home of this rule: the perf checker, the explanations and the report's plots all read
`fault_windows` from here, so a report can never shade a fault where a checker saw none.

Ours (chaos.nemesis): "start-X"/"stop-X" (X = partition, latency, ...), "kill"/"restart",
"pause"/"resume", "remove-member"/"add-member" (kind "membership"), and "heal", which
undoes everything still applied (it resumes paused nodes, restarts killed ones, adds removed
ones back and heals the network), so it closes every open window. Jepsen's bare
"start"/"stop" (its default partitioner) open and close a window of kind "fault".

A window opens on an ok (or info: it may have happened) opening op and closes on the next
completed, non-failed closing op of the same kind (a stop that failed left the fault on); a
failed opening op opens nothing. A window spans [opening op's invoke, closing op's completion]:
the widest time the fault could have acted. A window still open when the history ends closes
at the last time in the history (`closed` False).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import json

import numpy as np
import pandas as pd

from chaos.history.model import OPEN, History

Action = Literal["open", "close", "close-all"]

#: fields the nemesis records for itself, left out when a fault is described
BOOKKEEPING = frozenset({"did", "verified", "problems", "chosen"})

OPENERS = {"kill": "kill", "pause": "pause", "start": "fault", "remove-member": "membership"}
CLOSERS = {"restart": "kill", "resume": "pause", "stop": "fault", "add-member": "membership"}
#: window kinds that hold their node (value "node"/"nodes") out of the cluster: a killed, a
#: paused, a removed node. Its silence is the fault's, not the cluster's (chaos.checkers.
#: evidence), and the nemesis brings it back.
NODE_OUT = frozenset({"kill", "pause", "membership"})


def classify(f: Any) -> tuple[Action, str | None] | None:
    """("open"|"close"|"close-all", kind) for a nemesis op's f; None when it is no window edge."""
    if not isinstance(f, str):
        return None
    if f.startswith("start-"):
        return "open", f[len("start-"):]
    if f.startswith("stop-"):
        return "close", f[len("stop-"):]
    if f in OPENERS:
        return "open", OPENERS[f]
    if f in CLOSERS:
        return "close", CLOSERS[f]
    if f == "heal":
        return "close-all", None
    return None


@dataclass(frozen=True)
class FaultWindow:
    """One fault, from the op that started it to the op that ended it (times in ns)."""

    kind: str               # "partition", "latency", "kill", "pause", ... (f without start-/stop-)
    start: int
    end: int
    value: Any              # what the opening op did: its completion value if it has one (the
                            # nemesis records there what it did, e.g. {"partition": [["n1"],
                            # ["n2", "n3"]]} or {"node": "n2"}), else its invoke value
    ops: tuple[int, ...]    # history indexes of the opening (and closing) op lines
    closed: bool            # False when the history ended with the fault still on
    type: str = "ok"        # the opening op's completion type ("info": it may not have applied)
    node: Any = None        # the opening op's `node` field, if any
    end_op: int | None = None  # history index of the closing op's invoke line, if closed

    @property
    def verified(self) -> bool | None:
        """What the nemesis said after checking the fault took effect (None: not recorded)."""
        v = self.value.get("verified") if isinstance(self.value, dict) else None
        return v if isinstance(v, bool) else None


def last_time(pairs: pd.DataFrame) -> int:
    """The latest finite time in the history (0 for an empty one)."""
    if pairs.empty:
        return 0
    done = pairs["complete_time"].to_numpy()
    done = done[done != OPEN]
    inv = int(pairs["invoke_time"].max())
    return max(inv, int(done.max())) if len(done) else inv


def fault_windows(history: History, end_of_history: int | None = None) -> list[FaultWindow]:
    """The fault windows of the history, ordered by start (see the module doc for the rules).

    `end_of_history` (default: the history's last time) ends the windows still open: given
    when `history` holds only the non-client ops of a bigger one (chaos.checkers.sharded).
    """
    nem = history.nemesis()
    if nem.empty:
        return []
    if end_of_history is None:
        end_of_history = last_time(history.pairs)
    windows: list[FaultWindow] = []
    # kind -> [(start, value, invoke index, completion index, type, node)]
    open_: dict[str, list[tuple[int, Any, int, int, str, Any]]] = {}

    def window(kind: str, item: tuple[int, Any, int, int, str, Any], end: int,
               ops: tuple[int, ...], closed: bool, end_op: int | None) -> FaultWindow:
        start, value, i, ci, typ, node = item
        return FaultWindow(kind, start, max(end, start), value,
                           tuple(x for x in (i, ci) if x >= 0) + ops, closed, typ, node, end_op)

    for f, typ, asked, did, t0, t1, i, ci, node in zip(
            nem["f"], nem["type"], nem["value"], nem["result"], nem["invoke_time"],
            nem["complete_time"], nem["invoke_index"], nem["complete_index"], nem["node"]):
        value = did if did is not None else asked
        what = classify(f)
        if what is None:
            continue
        action, kind_ = what
        if action == "open":
            if typ in ("ok", "info"):
                open_.setdefault(str(kind_), []).append(
                    (int(t0), value, int(i), int(ci), str(typ), node))
            continue
        if typ == "fail":
            continue
        end = int(t1) if t1 != OPEN else end_of_history
        ops = tuple(int(x) for x in (i, ci) if x >= 0)
        for kind in ([str(kind_)] if action == "close" else list(open_)):
            for item in open_.pop(kind, []):
                windows.append(window(kind, item, end, ops, True, int(i)))
    for kind, items in open_.items():
        for item in items:
            windows.append(window(kind, item, end_of_history, (), False, None))
    windows.sort(key=lambda w: (w.start, w.end))
    return windows


def in_windows(times: np.ndarray, windows: list[FaultWindow]) -> np.ndarray:
    """Mask of `times` falling inside the union of `windows` (bounds inclusive)."""
    if not windows or len(times) == 0:
        return np.zeros(len(times), dtype=bool)
    spans = sorted((w.start, w.end) for w in windows)
    starts: list[int] = []
    ends: list[int] = []
    for s, e in spans:  # merge overlaps so one searchsorted answers
        if starts and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    s_arr = np.asarray(starts, dtype=np.int64)
    e_arr = np.asarray(ends, dtype=np.int64)
    pos = np.searchsorted(s_arr, times, side="right") - 1
    ok = pos >= 0
    out = np.zeros(len(times), dtype=bool)
    out[ok] = times[ok] <= e_arr[pos[ok]]
    return out


def overlapping(windows: list[FaultWindow], start: int, end: int) -> list[FaultWindow]:
    """The windows that meet [start, end] (e.g. between an acknowledgement and a read)."""
    return [w for w in windows if w.start <= end and w.end >= start]


def _join(v: Any) -> str:
    if isinstance(v, list) and v and all(isinstance(g, list) for g in v):
        return " | ".join(",".join(map(str, g)) for g in v)
    if isinstance(v, list):
        return ",".join(map(str, v))
    return v if isinstance(v, str) else json.dumps(v, default=str, separators=(",", ":"))


def describe(value: Any, node: Any = None, limit: int = 60) -> str:
    """What a fault did, short: "n1 | n2,n3" (partition), "n3" (kill), "200±50 ms" (latency).

    Reads the fields `chaos.nemesis` records (partition, node(s), ms/jitter_ms, shape) and
    falls back to compact JSON without the nemesis' bookkeeping (did, verified, ...). The
    report shows it beside the kind; the explanations after it ("partition n1 | n2,n3").
    """
    v = value
    text = None
    if isinstance(v, dict):
        for key in ("partition", "nodes", "node", "links"):
            if v.get(key) not in (None, [], {}, ""):
                text = _join(v[key])
                break
        else:
            ms = v.get("ms", v.get("latency_ms"))
            if ms is not None:
                jitter = v.get("jitter_ms")
                text = f"{ms}±{jitter} ms" if jitter else f"{ms} ms"
            else:
                rest = {k: x for k, x in v.items() if k not in BOOKKEEPING}
                v = next(iter(rest.values())) if len(rest) == 1 else (rest or None)
    if text is None:
        text = (str(node) if node is not None else "") if v is None else _join(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"
