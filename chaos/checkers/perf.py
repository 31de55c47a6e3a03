"""Perf: throughput, latency quantiles and availability inside and outside fault windows.

Informational: the verdict is True whenever there are client ops (and "unknown", with a
warning, when there are none, since then nothing was measured). The fault windows computed
here are also what chaos.checkers.explain uses to say which faults surrounded an anomaly.

Fault windows (agreed with the nemesis): a window opens on an ok (or info: it may have
happened) "start-X", "kill" or "pause" op and closes on the next completed, non-failed
"stop-X", "restart" or "resume" op of the same kind; "heal" closes every open window. A
window spans [opening op's invoke, closing op's completion]: the widest time the fault could
have acted. A window still open when the history ends closes at the last time in the history.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from chaos.checkers.base import UNKNOWN, CheckResult
from chaos.history.faults import classify
from chaos.history.model import OPEN, History

NS_PER_S = 1_000_000_000
QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


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


def client_mask(pairs: pd.DataFrame) -> np.ndarray:
    """Boolean mask of client operations (integer `process`), vectorised.

    Strings ("nemesis", "monitor", anything else) and None coerce to NaN.
    """
    return pd.to_numeric(pairs["process"], errors="coerce").notna().to_numpy()


def _last_time(pairs: pd.DataFrame) -> int:
    """The latest finite time in the history (0 for an empty one)."""
    if pairs.empty:
        return 0
    done = pairs["complete_time"].to_numpy()
    done = done[done != OPEN]
    inv = int(pairs["invoke_time"].max())
    return max(inv, int(done.max())) if len(done) else inv


def fault_windows(history: History) -> list[FaultWindow]:
    """The fault windows of the history, ordered by start (see the module doc for the rules)."""
    nem = history.nemesis()
    if nem.empty:
        return []
    end_of_history = _last_time(history.pairs)
    windows: list[FaultWindow] = []
    open_: dict[str, list[tuple[int, Any, int, int]]] = {}  # kind -> [(start, value, idx, cidx)]

    def close(kind: str, end: int, ops: tuple[int, ...]) -> None:
        for start, value, i, ci in open_.pop(kind, []):
            windows.append(FaultWindow(kind, start, max(end, start), value,
                                       tuple(x for x in (i, ci) if x >= 0) + ops, True))

    for f, typ, asked, did, t0, t1, i, ci in zip(
            nem["f"], nem["type"], nem["value"], nem["result"], nem["invoke_time"],
            nem["complete_time"], nem["invoke_index"], nem["complete_index"]):
        value = did if did is not None else asked
        what = classify(f)
        if what is None:
            continue
        action, kind = what
        if action == "open":
            if typ in ("ok", "info"):
                open_.setdefault(kind, []).append((int(t0), value, int(i), int(ci)))
            continue
        if typ == "fail":
            continue
        end = int(t1) if t1 != OPEN else end_of_history
        ops = tuple(int(x) for x in (i, ci) if x >= 0)
        for k in ([kind] if action == "close" else list(open_)):
            close(k, end, ops)
    for kind, items in open_.items():
        for start, value, i, ci in items:
            windows.append(FaultWindow(kind, start, max(end_of_history, start), value,
                                       tuple(x for x in (i, ci) if x >= 0), False))
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


def _latency_ms(lat_ns: np.ndarray) -> dict[str, float | int]:
    if len(lat_ns) == 0:
        return {"count": 0}
    q = np.percentile(lat_ns, list(QUANTILES.values()))
    out: dict[str, float | int] = {"count": int(len(lat_ns))}
    out.update({name: round(float(v) / 1e6, 3) for name, v in zip(QUANTILES, q)})
    out["max"] = round(float(lat_ns.max()) / 1e6, 3)
    return out


def _availability(types: np.ndarray) -> dict[str, Any]:
    n = len(types)
    ok = int((types == "ok").sum())
    return {"ops": n, "ok": ok, "ok_ratio": round(ok / n, 6) if n else None}


class PerfChecker:
    """Throughput, latency and availability; always valid when there are client ops."""

    name = "perf"

    def applies(self, history: History) -> bool:
        return bool(client_mask(history.pairs).any())

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        pairs = history.pairs
        client = pairs[client_mask(pairs)]
        if client.empty:
            return CheckResult(self.name, UNKNOWN,
                               warnings=["no client operations: nothing to measure"])
        types = client["type"].to_numpy()
        t0 = client["invoke_time"].to_numpy()
        t1 = client["complete_time"].to_numpy()
        done = t1 != OPEN
        first = int(t0.min())
        last = int(max(t0.max(), t1[done].max() if done.any() else t0.max()))
        duration_s = max(last - first, 1) / NS_PER_S
        lat = np.where(done, t1 - np.where(done, t0, 0), 0)
        fs = client["f"].to_numpy()
        latency: dict[str, Any] = {}
        measured = done & (types != "info")  # a timeout's "latency" is the timeout, not the op
        latency["all"] = _latency_ms(lat[measured])
        for f in pd.unique(fs):
            latency[str(f)] = _latency_ms(lat[measured & (fs == f)])
        windows = fault_windows(history)
        inside = in_windows(t0, windows)
        counts = {t: int((types == t).sum()) for t in ("ok", "fail", "info")}
        stats = {
            "ops": int(len(client)), **counts,
            "duration_s": round(duration_s, 3),
            "throughput_per_s": round(len(client) / duration_s, 3),
            "ok_throughput_per_s": round(counts["ok"] / duration_s, 3),
            "latency_ms": latency,
            "availability": {
                "overall": _availability(types),
                "in_faults": _availability(types[inside]),
                "outside_faults": _availability(types[~inside]),
            },
            "fault_windows": [
                {"kind": w.kind, "start_s": w.start / NS_PER_S, "end_s": w.end / NS_PER_S,
                 "length_s": (w.end - w.start) / NS_PER_S, "closed": w.closed}
                for w in windows],
        }
        return CheckResult(self.name, True, stats=stats)


PERF = PerfChecker()
