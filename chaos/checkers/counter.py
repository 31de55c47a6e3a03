"""Counter: every read must lie between what surely and what possibly had been added.

Jepsen's counter workload: `add` ops carry an increment (usually 1, not unique), `read` ops
return the counter. A read r is legal iff

    lower(r) <= value(r) <= upper(r)
    lower(r) = sum of ok adds that completed before r was invoked (they surely happened first)
    upper(r) = sum of ok, info and never-completed adds invoked before r completed (they may
               have happened first); failed adds surely did not happen

(for non-negative increments; with negative ones the bounds swap per add, handled the same
way by summing positive and negative parts separately). Vectorised: sort adds by completion
and by invocation, prefix sums, and one searchsorted per read.
"""
from __future__ import annotations

from numbers import Number
from typing import Any, Literal, Mapping

import numpy as np

from chaos.checkers.base import Anomaly, CheckResult
from chaos.checkers.perf import client_mask
from chaos.history.model import OPEN, History

NS_PER_S = 1e9


def _numeric(values: np.ndarray) -> bool:
    return len(values) > 0 and all(isinstance(v, Number) and not isinstance(v, bool)
                                   for v in values)


class CounterChecker:
    name = "counter"

    def applies(self, history: History) -> bool:
        """Adds of numbers and reads returning numbers (and no register writes)."""
        p = history.pairs[client_mask(history.pairs)]
        f = p["f"].to_numpy()
        if not (f == "add").any() or not (f == "read").any() or np.isin(f, ["write", "cas"]).any():
            return False
        reads = (f == "read") & (p["type"].to_numpy() == "ok")
        return (_numeric(p["value"].to_numpy()[f == "add"])
                and _numeric(p["result"].to_numpy()[reads]))

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        opts = opts or {}
        cap = int(opts.get("max_anomalies", 1000))
        p = history.pairs[client_mask(history.pairs)]
        f = p["f"].to_numpy()
        typ = p["type"].to_numpy()
        inv = p["invoke_time"].to_numpy()
        done = p["complete_time"].to_numpy()
        add = (f == "add") & (typ != "fail")
        amount = np.array([float(v) for v in p["value"].to_numpy()[add]], dtype=float)
        a_ok = typ[add] == "ok"
        a_inv, a_done = inv[add], done[add]
        rd = np.flatnonzero((f == "read") & (typ == "ok"))
        r_val = np.array([float(v) for v in p["result"].to_numpy()[rd]], dtype=float)
        r_inv, r_done = inv[rd], done[rd]

        def prefix(times: np.ndarray, parts: np.ndarray, at: np.ndarray,
                   side: Literal["left", "right"]) -> np.ndarray:
            order = np.argsort(times, kind="stable")
            sums = np.concatenate([[0.0], np.cumsum(parts[order])])
            return sums[np.searchsorted(times[order], at, side=side)]

        pos, neg = np.clip(amount, 0, None), np.clip(amount, None, 0)
        sure_done = np.where(a_ok, a_done, OPEN)      # only ok adds surely happened
        # lower: sure positive parts done before the read began + every possible negative part
        lower = prefix(sure_done, pos, r_inv, "left") + prefix(a_inv, neg, r_done, "left")
        upper = prefix(a_inv, pos, r_done, "left") + prefix(sure_done, neg, r_inv, "left")
        bad = np.flatnonzero((r_val < lower) | (r_val > upper))
        idx = p["invoke_index"].to_numpy()[rd]
        cidx = p["complete_index"].to_numpy()[rd]
        anomalies = []
        for i in bad[:cap]:
            low, high, v = lower[i], upper[i], r_val[i]
            side = "below" if v < low else "above"
            anomalies.append(Anomaly(
                "counter-out-of-bounds",
                f"read at {r_inv[i] / NS_PER_S:.3f} s returned {v:g}, {side} the possible range "
                f"[{low:g}, {high:g}] given the adds before and during it",
                ops=[int(idx[i]), int(cidx[i])], time=int(r_inv[i]),
                details={"value": v, "lower": low, "upper": high}))
        return CheckResult(self.name, valid=not len(bad), anomalies=anomalies,
                           stats={"reads": int(len(rd)), "adds": int(add.sum()),
                                  "out_of_bounds": int(len(bad))})


COUNTER = CounterChecker()
