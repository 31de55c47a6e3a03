"""Stale reads on registers: a read returned a value that had surely been overwritten.

Ops read (register workload, unique write values per key): ok f "read" (result = the value
read), f "write" (value) and f "cas" (value [expected, new]; an ok cas is a write of `new`).

A read r (ok) returning the value of write w is stale when some ok write w2 on the same key
completed before r was invoked, and w completed before w2 was invoked: then w2 surely took
effect after w and before r, whatever the order inside the overlaps (DESIGN §5). Reading the
initial value (None) after any ok write completed is stale too (w then "completed" at -inf).

How stale: lag = r.invoke - w2.complete for the w2 that makes r most stale, i.e. the earliest
completing such w2: the read's value had been replaced for at least `lag` ns when it began.

A value written by an info write or cas may have taken effect at any time after its invoke,
so it is never stale by itself (its completion is unknown). When several writes carry the
same value (the workload promised unique ones), the latest-completing one is assumed, which
can only hide staleness, never invent it. Values that no write produced (or only a failed
one) are counted and left to the linearizable checker.

Vectorised: ok writes are sorted by (key, invoke); a per-key suffix minimum of completion
times answers "earliest completion among writes invoked after t" with one searchsorted.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any, Mapping

import numpy as np
import pandas as pd

from chaos.checkers._frame import (best_per_group, combine, factorize, object_array,
                                   sorted_unique)
from chaos.checkers._frame import register_shaped
from chaos.checkers.base import Anomaly, CheckResult
from chaos.history.model import OPEN, History

NS_PER_S = 1e9


def _cas_new(v: Any) -> Any:
    return v[1] if isinstance(v, (list, tuple)) and len(v) == 2 else None


def _written(values: np.ndarray, fs: np.ndarray) -> np.ndarray:
    """The value each write or cas op writes (a cas [expected, new] writes new)."""
    cas = fs == "cas"
    if not cas.any():
        return values
    out = values.copy()
    olds = values[cas].tolist()
    if set(map(type, olds)) == {list} and set(map(len, olds)) == {2}:  # the usual: in C
        out[cas] = object_array(list(map(itemgetter(1), olds)))
    else:
        out[cas] = object_array([_cas_new(v) for v in olds])
    return out


class StaleReadsChecker:
    """Register stale-read checker (reads of surely-overwritten values, with their lag)."""

    name = "stale-reads"

    def applies(self, history: History) -> bool:
        return register_shaped(history.pairs)

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        opts = opts or {}
        cap = int(opts.get("max_anomalies", 1000))
        pairs = history.pairs
        col = lambda name, rows: pairs[name].to_numpy()[rows]  # noqa: E731 - no frame copies
        f = pairs["f"].to_numpy()
        typ = pairs["type"].to_numpy()
        is_write = (f == "write") | (f == "cas")
        w_rows = np.flatnonzero(is_write & (typ != "fail"))
        f_rows = np.flatnonzero(is_write & (typ == "fail"))
        r_rows = np.flatnonzero((f == "read") & (typ == "ok"))
        nw, nr = len(w_rows), len(r_rows)
        w_val = _written(col("value", w_rows), col("f", w_rows))
        f_val = _written(col("value", f_rows), col("f", f_rows))
        r_val = col("result", r_rows)
        initial = r_val == None  # noqa: E711 - elementwise on an object array
        keys = pairs["key"].to_numpy()
        key_codes, key_values = factorize(np.concatenate([keys[w_rows], keys[r_rows],
                                                          keys[f_rows]]))
        w_key, r_key = key_codes[:nw], key_codes[nw:nw + nr]
        f_key = key_codes[nw + nr:]
        # initial-value reads take no part in value matching (None is nobody's write)
        rv = np.flatnonzero(~initial)
        val_codes, _ = factorize(np.concatenate([w_val, r_val[rv], f_val]))
        ids = combine(np.concatenate([w_key, r_key[rv], f_key]), val_codes)
        n_ids = int(ids.max()) + 1 if len(ids) else 0
        w_id, f_id = ids[:nw], ids[nw + len(rv):]
        r_id = np.full(nr, -1, dtype=np.int64)
        r_id[rv] = ids[nw:nw + len(rv)]

        w_inv = col("invoke_time", w_rows)
        w_cmp = col("complete_time", w_rows)
        w_ok = col("type", w_rows) == "ok"
        w_cmp_eff = np.where(w_ok, w_cmp, OPEN)  # info: completion unknown
        # the write of each (key, value): the latest-completing one (can only hide staleness)
        best = np.full(n_ids + 1, -1, dtype=np.int64)  # slot n_ids: "no value" for -1 ids
        ids_of, rows_of = best_per_group(w_id, w_cmp_eff)
        best[ids_of] = rows_of
        r_inv = col("invoke_time", r_rows)
        w_of_r = best[r_id]  # r_id -1 reads slot n_ids, which stays -1
        known = initial | (w_of_r >= 0)
        threshold = np.where(initial, np.iinfo(np.int64).min,
                             w_cmp_eff[np.maximum(w_of_r, 0)] if nw else OPEN)

        # ok writes sorted by (key, invoke) with the per-key suffix minimum of completions
        ok_rows = np.flatnonzero(w_ok)
        stale = np.zeros(nr, dtype=bool)
        lag = np.zeros(nr, dtype=np.int64)
        pos = np.zeros(nr, dtype=np.int64)
        if len(ok_rows) and nr:
            uniq = sorted_unique(w_inv[ok_rows])
            width = len(uniq) + 1
            code = (w_key[ok_rows].astype(np.int64) * width
                    + np.searchsorted(uniq, w_inv[ok_rows], "right"))
            srt = np.argsort(code, kind="stable")
            s_code, s_row = code[srt], ok_rows[srt]
            s_key = w_key[s_row]
            s_cmp = w_cmp[s_row]
            rev = pd.Series(s_cmp[::-1])
            s_min = rev.groupby(s_key[::-1]).cummin().to_numpy()[::-1]
            t_rank = np.where(threshold == OPEN, width,
                              np.searchsorted(uniq, threshold, "right"))
            t_rank = np.where(initial, 0, t_rank)
            probe = r_key.astype(np.int64) * width + t_rank
            pos = np.searchsorted(s_code, probe, side="right")
            inside = pos < len(s_code)
            p = np.minimum(pos, len(s_code) - 1)
            inside &= s_key[p] == r_key
            inside &= known & (threshold != OPEN)
            m = np.where(inside, s_min[p], OPEN)
            stale = inside & (m < r_inv)
            lag = np.where(stale, r_inv - m, 0)

        unwritten = ~known
        of_failed = unwritten & np.isin(r_id, f_id) & (r_id >= 0)
        stale_rows = np.flatnonzero(stale)
        lags = lag[stale_rows]
        stats: dict[str, Any] = {
            "reads": int(nr), "writes": int(nw), "keys": int(len(key_values)),
            "stale": int(len(stale_rows)),
            "initial_value_reads": int(initial.sum()),
            "reads_of_unwritten_values": int((unwritten & ~of_failed).sum()),
            "reads_of_failed_writes": int(of_failed.sum()),
        }
        if opts.get("keep_lags"):  # chaos.checkers.sharded merges the lags of its shards
            stats["lags_ns"] = lags
        if len(lags):
            stats["lag_ms"] = {"p50": float(np.percentile(lags, 50)) / 1e6,
                               "max": float(lags.max()) / 1e6}
        warnings: list[str] = []
        if unwritten.any():
            warnings.append(f"{int(unwritten.sum())} read(s) returned a value no successful or "
                            f"pending write produced (left to the linearizable checker)")
        if len(stale_rows) > cap:
            warnings.append(f"{len(stale_rows)} stale reads, only the first {cap} listed")
        anomalies: list[Anomaly] = []
        if len(stale_rows):
            cols = {c: pairs[c].to_numpy() for c in ("invoke_index", "complete_index", "result",
                                                     "value", "f", "node", "invoke_time",
                                                     "complete_time")}
            ctx = dict(cols=cols, r_rows=r_rows, w_rows=w_rows, key_values=key_values,
                       s_row=s_row, s_key=s_key, s_min=s_min, r_key=r_key)
            for r in stale_rows[:cap]:
                anomalies.append(_anomaly(int(r), int(pos[r]), int(lag[r]),
                                          int(w_of_r[r]), ctx))
        return CheckResult(self.name, not anomalies, anomalies=anomalies, stats=stats,
                           warnings=warnings)


def _ops(cols: dict[str, np.ndarray], row: int) -> list[int]:
    i, c = int(cols["invoke_index"][row]), int(cols["complete_index"][row])
    return [i, c] if c >= 0 else [i]


def _anomaly(r: int, pos: int, lag: int, w: int, ctx: dict[str, Any]) -> Anomaly:
    """Build the anomaly of stale read number r (w = its write number, -1 for the initial
    value); numbers index r_rows / w_rows, which index the pairs columns."""
    cols, r_rows, w_rows = ctx["cols"], ctx["r_rows"], ctx["w_rows"]
    s_key, s_min = ctx["s_key"], ctx["s_min"]
    key_code = ctx["r_key"][r]
    end = int(np.searchsorted(s_key, key_code, side="right"))
    m = s_min[pos]
    q = pos + int(np.searchsorted(s_min[pos:end], m, side="right")) - 1  # the earliest w2
    rr, w2 = int(r_rows[r]), int(w_rows[ctx["s_row"][q]])
    key = ctx["key_values"][key_code]
    value = cols["result"][rr]
    new = cols["value"][w2]
    if cols["f"][w2] == "cas":
        new = _cas_new(new)
    ops = _ops(cols, rr) + (_ops(cols, int(w_rows[w])) if w >= 0 else []) + _ops(cols, w2)
    node = cols["node"][rr]
    details: dict[str, Any] = {
        "lag_ns": lag, "value": value, "read_node": node, "overwritten_by": new,
        "read_index": int(cols["invoke_index"][rr]),
        "overwrite_node": cols["node"][w2],
        "overwrite_complete_time": int(cols["complete_time"][w2]),
        # from the overwrite's acknowledgement to the read that missed it (for explanations)
        "known_time": int(cols["complete_time"][w2]), "missed_time": int(cols["invoke_time"][rr]),
    }
    what = "the initial value" if w < 0 else f"{value!r}"
    if w >= 0:
        details["written_by"] = cols["node"][int(w_rows[w])]
    on = f" on {node}" if node is not None else ""
    t = int(cols["invoke_time"][rr])
    return Anomaly("stale-read", f"read of {key!r}{on} at {t / NS_PER_S:.3f} s returned {what}, "
                   f"but {new!r} had replaced it {lag / 1e6:.1f} ms before the read began",
                   ops=sorted(ops), key=key, time=t, details=details)


STALE_READS = StaleReadsChecker()
