"""Time spans a person lines anomalies up against: fault windows and who was leader when.

Both come from the history alone (nemesis and monitor ops), so a report of an imported or
replayed history shows them the same way as a live run's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from chaos.history.faults import classify
from chaos.history.model import OPEN, History



@dataclass
class FaultWindow:
    """One fault, from its start op's invoke to its stop op's completion (the widest honest span).

    end is None when the fault was never stopped in the history (it lasted to the end).
    """

    kind: str
    start: int
    end: int | None
    detail: str
    start_index: int
    stop_index: int | None = None
    outcome: str = "ok"  # start op's completion type ("info": may not have applied), and
    #                      " (not verified)" when the nemesis could not confirm it took effect


@dataclass
class RoleRun:
    """A node kept one role and term between two times (consecutive equal observations merged)."""

    node: str
    role: str
    term: Any
    start: int
    end: int


@dataclass
class LeaderOverlap:
    """A time span in which two or more nodes claimed leadership at once."""

    start: int
    end: int
    leaders: list[tuple[str, Any]] = field(default_factory=list)  # (node, term)

    @property
    def same_term(self) -> bool:
        """Two leaders in one term (or both without a term): election safety broken."""
        terms = [t for _, t in self.leaders]
        return len(set(map(repr, terms))) < len(terms)


def _join(v: Any) -> str:
    if isinstance(v, list) and v and all(isinstance(g, list) for g in v):
        return " | ".join(",".join(map(str, g)) for g in v)
    if isinstance(v, list):
        return ",".join(map(str, v))
    return v if isinstance(v, str) else json.dumps(v, default=str, separators=(",", ":"))


def describe_value(value: Any, node: Any = None, limit: int = 60) -> str:
    """What a fault did, short: "n1 | n2,n3" (partition), "n3" (kill), "200±50 ms" (latency).

    Reads the fields `chaos.nemesis` records (partition, node(s), ms/jitter_ms, shape) and
    falls back to compact JSON without the bulky "did"/"verified" bookkeeping.
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
                rest = {k: x for k, x in v.items() if k not in ("did", "verified", "problems")}
                v = next(iter(rest.values())) if len(rest) == 1 else (rest or None)
    if text is None:
        text = (str(node) if node is not None else "") if v is None else _join(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fault_windows(history: History) -> list[FaultWindow]:
    """Pair nemesis start/stop ops into windows, ordered by start.

    Which ops open and close windows is chaos.history.faults.classify (the same rule the
    perf checker and the explanations use). A stop closes all open windows of its kind (a
    restart brings every killed node back); heal closes all. A start that failed did not
    happen and opens nothing; a stop that failed closes nothing.
    """
    nem = history.nemesis()
    windows: list[FaultWindow] = []
    open_by_kind: dict[str, list[FaultWindow]] = {}
    for row in nem.sort_values("invoke_time", kind="stable").itertuples(index=False):
        kind = classify(row.f)
        if kind is None:
            continue
        what, k = kind
        if what == "open":
            if row.type == "fail":
                continue
            done = row.result if isinstance(row.result, dict) and row.result else None
            outcome = str(row.type)
            if done is not None and done.get("verified") is False:
                outcome += " (not verified)"
            w = FaultWindow(kind=k, start=int(row.invoke_time), end=None,
                            detail=describe_value(done or row.value, row.node),
                            start_index=int(row.invoke_index), outcome=outcome)
            windows.append(w)
            open_by_kind.setdefault(k, []).append(w)
        else:
            if row.type == "fail":  # a stop that failed left the fault on (as perf reads it)
                continue
            end = int(row.complete_time if row.complete_time != OPEN else row.invoke_time)
            for ck in (list(open_by_kind) if what == "close-all" else [k]):
                for w in open_by_kind.pop(ck, []):
                    w.end, w.stop_index = end, int(row.invoke_index)
    return windows


def _obs_frame(history: History) -> pd.DataFrame:
    """Monitor observations: node, time, role, term (role "no answer" when info/fail)."""
    mon = history.monitor()
    if mon.empty:
        return pd.DataFrame(columns=["node", "time", "role", "term"])
    t = np.where(mon["complete_time"].to_numpy() != OPEN,
                 mon["complete_time"].to_numpy(), mon["invoke_time"].to_numpy())
    roles, terms = [], []
    for typ, res in zip(mon["type"], mon["result"]):
        if typ == "ok" and isinstance(res, dict):
            roles.append(str(res.get("role") or "unknown"))
            terms.append(res.get("term"))
        else:
            roles.append("no answer")
            terms.append(None)
    term_col = np.empty(len(terms), dtype=object)  # keep 4 as 4 and None as None, not 4.0/NaN
    term_col[:] = terms
    return pd.DataFrame({"node": mon["node"].astype(str).to_numpy(), "time": t,
                         "role": roles, "term": pd.Series(term_col, dtype=object)})


def role_runs(history: History, end_time: int | None = None) -> list[RoleRun]:
    """Per node, maximal runs of equal (role, term) observations.

    An observation holds until the node's next one; the last holds for one typical polling
    interval (capped at `end_time`), not to the end, so a node that stopped answering the
    monitor does not look like it stayed leader.
    """
    obs = _obs_frame(history)
    runs: list[RoleRun] = []
    for node, g in obs.sort_values("time", kind="stable").groupby("node", sort=True):
        times = g["time"].to_numpy(dtype=np.int64)
        gaps = np.diff(times)
        step = int(np.median(gaps)) if len(gaps) else 0
        last_end = int(times[-1]) + step
        if end_time is not None:
            last_end = max(int(times[-1]), min(last_end, end_time))
        ends = np.append(times[1:], last_end)
        keys = [(r, repr(t)) for r, t in zip(g["role"], g["term"])]
        cur: RoleRun | None = None
        prev_key = None
        for i, key in enumerate(keys):
            if cur is not None and key == prev_key:
                cur.end = int(ends[i])
                continue
            cur = RoleRun(node=str(node), role=g["role"].iat[i], term=g["term"].iat[i],
                          start=int(times[i]), end=int(ends[i]))
            runs.append(cur)
            prev_key = key
    return runs


def leader_overlaps(runs: list[RoleRun]) -> list[LeaderOverlap]:
    """Spans where at least two nodes' leader runs overlap (a sweep over run boundaries)."""
    events: list[tuple[int, int, RoleRun]] = []
    for r in runs:
        if r.role == "leader" and r.end > r.start:
            events.append((r.start, 1, r))
            events.append((r.end, 0, r))  # ends sort before starts at the same instant
    events.sort(key=lambda e: (e[0], e[1]))
    active: dict[int, RoleRun] = {}
    out: list[LeaderOverlap] = []
    cur: LeaderOverlap | None = None
    for t, is_start, r in events:
        if is_start:
            active[id(r)] = r
        else:
            active.pop(id(r), None)
        nodes = {a.node for a in active.values()}
        if len(nodes) >= 2:
            leaders = sorted({(a.node, a.term) for a in active.values()}, key=repr)
            if cur is None:
                cur = LeaderOverlap(start=t, end=t, leaders=leaders)
                out.append(cur)
            else:
                for ld in leaders:
                    if ld not in cur.leaders:
                        cur.leaders.append(ld)
        elif cur is not None:
            cur.end = t
            cur = None
    return [o for o in out if o.end > o.start]
