"""Perf: throughput, latency quantiles and availability inside and outside fault windows.

Informational: the verdict is True whenever there are client ops (and "unknown", with a
warning, when there are none, since then nothing was measured). The fault windows
come from chaos.history.faults (their one home: the explanations and the report's plots
read the same windows), re-exported here as `fault_windows` / `in_windows` / `FaultWindow`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from chaos.checkers._frame import Kinds
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


def _latency_ms(lat_ns: np.ndarray, own: bool = False) -> dict[str, float | int]:
    """The latency quantiles of `lat_ns`, in ms. `own`: the array is the caller's to spoil
    (numpy then partitions it in place instead of copying it: a 30M-line history's
    latencies are 120 MB)."""
    if len(lat_ns) == 0:
        return {"count": 0}
    top = lat_ns.max()
    q = np.percentile(lat_ns, list(QUANTILES.values()), overwrite_input=own)
    out: dict[str, float | int] = {"count": int(len(lat_ns))}
    out.update({name: round(float(v) / 1e6, 3) for name, v in zip(QUANTILES, q)})
    out["max"] = round(float(top) / 1e6, 3)
    return out


def _availability(n: int, ok: int) -> dict[str, Any]:
    return {"ops": n, "ok": ok, "ok_ratio": round(ok / n, 6) if n else None}


@dataclass
class PerfParts:
    """The client ops' numbers perf reports, mergeable over disjoint parts of a history.

    Latencies are kept exactly (int64 ns, the measured ones only: 8 bytes an op), so the
    quantiles of a history read in shards (chaos.checkers.sharded) are the same numbers.
    """

    ops: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "info": 0})
    first: int | None = None
    last: int | None = None
    #: f -> (invoke index where it first appears, latency arrays)
    latency: dict[Any, tuple[int, list[np.ndarray]]] = field(default_factory=dict)
    inside: dict[str, int] = field(default_factory=lambda: {"ops": 0, "ok": 0})

    @classmethod
    def of(cls, pairs: pd.DataFrame, windows: list[FaultWindow],
           kinds: Kinds | None = None) -> "PerfParts":
        """The parts of the client ops in `pairs` (`kinds`: their Kinds, when the caller
        has them)."""
        mask = client_mask(pairs)
        client = pairs if mask.all() else pairs[mask]  # a shard: all client ops, no copy
        parts = cls()
        if client.empty:
            return parts
        if kinds is None or client is not pairs:
            kinds = Kinds(client)
        t0 = client["invoke_time"].to_numpy()
        t1 = client["complete_time"].to_numpy()
        done = t1 != OPEN
        parts.ops = int(len(client))
        parts.counts = {t: int(kinds.type(t).sum()) for t in ("ok", "fail", "info")}
        parts.first = int(t0.min())
        parts.last = int(max(t0.max(), t1[done].max() if done.any() else t0.max()))
        lat = np.where(done, t1 - np.where(done, t0, 0), 0)
        measured = done & ~kinds.type("info")  # a timeout's "latency" is the timeout, not the op
        fs = client["f"].to_numpy()
        codes, uniq = pd.factorize(fs, use_na_sentinel=False)
        first_pos = np.full(len(uniq), len(fs), dtype=np.int64)
        np.minimum.at(first_pos, codes, np.arange(len(fs)))
        idx = client["invoke_index"].to_numpy()
        for c, f in enumerate(uniq):
            parts.latency[f] = (int(idx[first_pos[c]]), [lat[measured & (codes == c)]])
        inside = in_windows(t0, windows)
        parts.inside = {"ops": int(inside.sum()), "ok": int((kinds.type("ok") & inside).sum())}
        return parts

    def merge(self, other: "PerfParts") -> None:
        """Add `other` (the parts of disjoint client ops) into self."""
        self.ops += other.ops
        for t, n in other.counts.items():
            self.counts[t] += n
        for name in ("ops", "ok"):
            self.inside[name] += other.inside[name]
        if other.first is not None and other.last is not None:
            self.first = other.first if self.first is None else min(self.first, other.first)
            self.last = other.last if self.last is None else max(self.last, other.last)
        for f, (at, lats) in other.latency.items():
            mine = self.latency.get(f)
            self.latency[f] = (at, lats) if mine is None else (min(mine[0], at), mine[1] + lats)

    def stats(self, windows: list[FaultWindow]) -> dict[str, Any]:
        assert self.first is not None and self.last is not None
        span_ns = self.last - self.first
        duration_s = span_ns / NS_PER_S
        measurable = self.ops >= THROUGHPUT_MIN_OPS and span_ns >= THROUGHPUT_MIN_NS
        latency: dict[str, Any] = {}
        by_f = sorted(self.latency.items(), key=lambda kv: kv[1][0])
        # one concatenation at a time, each spoilt by its quantiles: beside the parts,
        # memory holds one more copy of the latencies, not four
        latency["all"] = _latency_ms(np.concatenate([p for _, (_, parts) in by_f
                                                     for p in parts]), own=True)
        for f, (_, parts) in by_f:
            latency[str(f)] = _latency_ms(np.concatenate(parts), own=True)
        counts = self.counts
        out = {"ops": self.ops - self.inside["ops"], "ok": counts["ok"] - self.inside["ok"]}
        stats: dict[str, Any] = {
            "ops": self.ops, **counts,
            "duration_s": round(duration_s, 3),
            "throughput_per_s": round(self.ops / duration_s, 3) if measurable else None,
            "ok_throughput_per_s": round(counts["ok"] / duration_s, 3) if measurable else None,
            "latency_ms": latency,
            "availability": {
                "overall": _availability(self.ops, counts["ok"]),
                "in_faults": _availability(self.inside["ops"], self.inside["ok"]),
                "outside_faults": _availability(out["ops"], out["ok"]),
            },
            "fault_windows": [
                {"kind": w.kind, "start_s": w.start / NS_PER_S, "end_s": w.end / NS_PER_S,
                 "length_s": (w.end - w.start) / NS_PER_S, "closed": w.closed}
                for w in windows],
        }
        if not measurable:
            stats["throughput_note"] = (
                f"no throughput: it needs at least {THROUGHPUT_MIN_OPS} client ops over at least "
                f"{THROUGHPUT_MIN_NS / 1e6:g} ms (this history: {self.ops} over "
                f"{span_ns / 1e6:g} ms)")
        return stats


class PerfChecker:
    """Throughput, latency and availability; always valid when there are client ops."""

    name = "perf"

    def applies(self, history: History) -> bool:
        return bool(client_mask(history.pairs).any())

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        windows = fault_windows(history)
        return self.result(PerfParts.of(history.pairs, windows), windows)

    def result(self, parts: PerfParts, windows: list[FaultWindow]) -> CheckResult:
        """The verdict and stats from the (merged) parts of a history."""
        if not parts.ops:
            return CheckResult(self.name, UNKNOWN,
                               warnings=["no client operations: nothing to measure"])
        return CheckResult(self.name, True, stats=parts.stats(windows))


PERF = PerfChecker()


__all__ = ["PERF", "FaultWindow", "PerfChecker", "client_mask", "fault_windows", "in_windows"]
