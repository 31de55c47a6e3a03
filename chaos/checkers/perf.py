"""Perf: throughput, latency quantiles and availability inside and outside fault windows.

Informational: the verdict is True whenever there are client ops (and "unknown", with a
warning, when there are none, since then nothing was measured). The fault windows
come from chaos.history.faults (their one home: the explanations and the report's plots
read the same windows), re-exported here as `fault_windows` / `in_windows` / `FaultWindow`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from chaos.checkers.base import UNKNOWN, CheckResult
from chaos.history.faults import FaultWindow, fault_windows, in_windows
from chaos.history.model import OPEN, History
from chaos.history.model import client_mask as _client_mask

NS_PER_S = 1_000_000_000
#: throughput needs at least this many client ops spread over at least this long; below
#: either, ops/s is noise (one 200 ns op "ran at" 5e6/s) and is reported as None, with a note
THROUGHPUT_MIN_OPS = 2
THROUGHPUT_MIN_NS = 1_000_000  # 1 ms
QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def client_mask(pairs: pd.DataFrame) -> np.ndarray:
    """Boolean mask of client operations: chaos.history.model.client_mask on `process`
    (integer process ids only; "3" as a string is not a client, as everywhere else)."""
    return _client_mask(pairs["process"])


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
        span_ns = last - first
        duration_s = span_ns / NS_PER_S
        measurable = len(client) >= THROUGHPUT_MIN_OPS and span_ns >= THROUGHPUT_MIN_NS
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
        stats: dict[str, Any] = {
            "ops": int(len(client)), **counts,
            "duration_s": round(duration_s, 3),
            "throughput_per_s": round(len(client) / duration_s, 3) if measurable else None,
            "ok_throughput_per_s": round(counts["ok"] / duration_s, 3) if measurable else None,
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
        if not measurable:
            stats["throughput_note"] = (
                f"no throughput: it needs at least {THROUGHPUT_MIN_OPS} client ops over at least "
                f"{THROUGHPUT_MIN_NS / 1e6:g} ms (this history: {len(client)} over "
                f"{span_ns / 1e6:g} ms)")
        return CheckResult(self.name, True, stats=stats)


PERF = PerfChecker()


__all__ = ["PERF", "FaultWindow", "PerfChecker", "client_mask", "fault_windows", "in_windows"]
