"""Time spans a person lines anomalies up against: fault windows and who was leader when.

Both come from the history alone (nemesis and monitor ops), so a report of an imported or
replayed history shows them the same way as a live run's. They are display views of the one
home of each timeline: fault windows from chaos.history.faults (what perf and the
explanations use), leadership intervals and their overlaps from chaos.history.leadership
(what the dual-leaders checker judges), so the report can never contradict a checker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from chaos.history import faults as _faults
from chaos.history import leadership as _leadership
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
    same_term: bool = False  # two of them in one term, or both without: election safety broken


#: what a fault did, short (the one describer, shared with the explanations)
describe_value = _faults.describe


def fault_windows(history: History) -> list[FaultWindow]:
    """The shared fault windows (chaos.history.faults: the rule perf and the explanations
    use), with what a person reads: a short detail, the opening op's outcome ("info": may not
    have applied; "(not verified)" when the nemesis could not confirm it), and end None for a
    fault never stopped in the history."""
    out = []
    for w in _faults.fault_windows(history):
        outcome = w.type + (" (not verified)" if w.verified is False else "")
        value = w.value if not (isinstance(w.value, dict) and not w.value) else None
        out.append(FaultWindow(kind=w.kind, start=w.start, end=w.end if w.closed else None,
                               detail=describe_value(value, w.node),
                               start_index=w.ops[0] if w.ops else -1,
                               stop_index=w.end_op, outcome=outcome))
    return out


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


def lanes(history: History, end_time: int | None = None) -> list[RoleRun]:
    """What the leadership plot draws: every non-leader role run of role_runs, and as leader
    runs exactly the dual-leaders checker's intervals (chaos.history.leadership)."""
    runs = [r for r in role_runs(history, end_time) if r.role != "leader"]
    runs += [RoleRun(node=str(iv.node), role="leader", term=iv.term, start=iv.start,
                     end=iv.end) for iv in _leadership.leader_intervals(history)]
    runs.sort(key=lambda r: (r.node, r.start))
    return runs


def leader_overlaps(history: History) -> list[LeaderOverlap]:
    """Spans where two or more nodes claimed leadership at once: the dual-leaders checker's
    overlaps (chaos.history.leadership.leader_overlaps), pairs that meet merged into spans."""
    pairs = sorted(_leadership.leader_overlaps(_leadership.leader_intervals(history)),
                   key=lambda o: (o.start, o.end))
    out: list[LeaderOverlap] = []
    for o in pairs:
        who = [(str(o.a.node), o.a.term), (str(o.b.node), o.b.term)]
        cur = out[-1] if out and o.start <= out[-1].end else None
        if cur is None:
            out.append(LeaderOverlap(start=o.start, end=o.end, leaders=who,
                                     same_term=o.same_term))
            continue
        cur.end = max(cur.end, o.end)
        cur.same_term = cur.same_term or o.same_term
        for ld in who:
            if ld not in cur.leaders:
                cur.leaders.append(ld)
    return out
