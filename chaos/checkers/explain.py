"""Explanations: tie each anomaly to the faults and leaders around it (DESIGN §5, last point).

For an anomaly at time t the explanation says which fault windows were active at t or had
ended shortly before (within `recent_ns`, default 2 s: a partition that just healed is the
usual suspect), which nodes claimed leadership at t and in which term (grouped by partition
side when a partition was on), and, for a lost write, where and in which term it was
acknowledged. When the anomaly spans time, from the moment a value was known (details
"known_time": the acknowledgement, or the overwrite for a stale read) to the read that missed
it (details "missed_time"), the faults that acted in between are named too, with their start
and end: the kill and restart that emptied a node, the partition that healed before the read.
Fault windows and leadership intervals come from their one home (chaos.history.faults and
.leadership) and are computed once per history, so explaining thousands of anomalies stays
cheap.
"""
from __future__ import annotations

from typing import Any, Iterable

from chaos.checkers.base import Anomaly
from chaos.history.faults import FaultWindow, describe, fault_windows, overlapping
from chaos.history.leadership import LeaderInterval, leader_intervals, leaders_at
from chaos.history.model import OPEN, History

NS_PER_S = 1e9
RECENT_NS = 2 * 1_000_000_000
#: an anomaly this soon after the monitor's last answer (the final reads, just after the
#: monitor stopped) is explained with the leaders that answer showed
AFTER_MONITOR_NS = 500_000_000


def _sides(value: Any) -> list[list[Any]] | None:
    """The node groups of a partition fault's value, if it has that shape."""
    v = value.get("partition") if isinstance(value, dict) else value
    if isinstance(v, list) and v and all(isinstance(s, list) for s in v):
        return v
    return None


def _describe(w: FaultWindow) -> str:
    """A fault in a few words: its kind, then what it did (chaos.history.faults.describe,
    the describer the report uses too): "partition n1 | n2,n3", "kill n2", "latency 200 ms"."""
    return f"{w.kind} {describe(w.value, w.node)}".strip()


def _leader_text(iv: LeaderInterval) -> str:
    return f"{iv.node} (term {iv.term})" if iv.term is not None else f"{iv.node} (no term)"


def explain_one(anomaly: Anomaly, windows: list[FaultWindow],
                intervals: list[LeaderInterval], recent_ns: int = RECENT_NS,
                has_monitor: bool = True, monitor_end: int | None = None) -> str:
    """The explanation of one anomaly, from precomputed fault windows and leader intervals
    (`monitor_end`: the time of the monitor's last answer, None: unknown)."""
    parts: list[str] = []
    t = anomaly.time
    if t is not None:
        active = [w for w in windows if w.start <= t <= w.end]
        ended = [w for w in windows if w.end < t <= w.end + recent_ns]
        for w in active:
            parts.append(f"{_describe(w)} active since {w.start / NS_PER_S:.3f} s")
        for w in ended:
            parts.append(f"{_describe(w)} ended {(t - w.end) / 1e6:.0f} ms before")
        if not active and not ended:
            parts.append("no fault active or just ended")
        leaders = leaders_at(intervals, t)
        partition = next((s for s in (_sides(w.value) for w in active) if s), None)
        if not has_monitor:
            pass
        elif not leaders:
            parts.append(_no_leader_text(intervals, t, monitor_end))
        elif partition:
            for side in partition:
                on = [_leader_text(iv) for iv in leaders if iv.node in side]
                parts.append(f"side {','.join(map(str, side))}: leader "
                             + (", ".join(on) if on else "none"))
        else:
            parts.append("leader " + ", ".join(_leader_text(iv) for iv in leaders))
    d = anomaly.details
    between = _between(d, windows)
    if between:
        parts.append(between)
    if d.get("acked_by") is not None or d.get("ack_term") is not None:
        where = f" by {d['acked_by']}" if d.get("acked_by") is not None else ""
        term = f" in term {d['ack_term']}" if d.get("ack_term") is not None else ""
        parts.append(f"acknowledged{where}{term}")
    at = f"at {t / NS_PER_S:.3f} s: " if t is not None else ""
    return at + "; ".join(parts) if parts else at.rstrip(": ")


def _no_leader_text(intervals: list[LeaderInterval], t: int, monitor_end: int | None) -> str:
    """No leadership interval contains t. After the monitor's last answer (a final read
    just after the monitor stopped) that is not "nobody led": say what it last saw."""
    last = [_leader_text(iv) for iv in intervals
            if monitor_end is not None and iv.end >= monitor_end]
    if (monitor_end is None or not last or t <= monitor_end
            or t - monitor_end > AFTER_MONITOR_NS):
        return "no node claimed leadership then"
    return (f"the monitor's last status, {(t - monitor_end) / 1e6:.0f} ms before "
            f"({monitor_end / NS_PER_S:.3f} s), had leader " + ", ".join(last))


_UNDONE = {"kill": "restarted", "pause": "resumed", "partition": "healed",
           "membership": "added back"}


def _between(d: dict[str, Any], windows: list[FaultWindow]) -> str | None:
    """The faults that acted between details' known_time and missed_time, in order."""
    known, missed = d.get("known_time"), d.get("missed_time")
    if not isinstance(known, int) or not isinstance(missed, int) or missed <= known:
        return None
    span = (f"between known at {known / NS_PER_S:.3f} s and the read at "
            f"{missed / NS_PER_S:.3f} s that missed it")
    acted = overlapping(windows, known, missed)
    if not acted:
        return f"no fault acted {span}"
    faults = []
    for w in acted:
        undone = (f"{_UNDONE.get(w.kind, 'ended')} at {w.end / NS_PER_S:.3f} s" if w.closed
                  else "still on")
        faults.append(f"{_describe(w)} at {w.start / NS_PER_S:.3f} s, {undone}")
    return f"{span}: " + "; ".join(faults)


def explain(history: History, anomalies: Iterable[Anomaly],
            recent_ns: int = RECENT_NS, end_of_history: int | None = None) -> None:
    """Fill `explanation` on every anomaly (in place), computing intervals once.

    Reads only the non-client ops (faults, monitor); `end_of_history` as in fault_windows.
    """
    anomalies = list(anomalies)
    if not anomalies:
        return
    windows = fault_windows(history, end_of_history)
    intervals = leader_intervals(history)
    pairs = history.pairs
    mon = pairs[pairs["process"] == "monitor"]
    has_monitor = bool(len(mon))
    done = mon["complete_time"][mon["complete_time"] != OPEN]
    monitor_end = int(done.max()) if len(done) else None
    for a in anomalies:
        a.explanation = explain_one(a, windows, intervals, recent_ns, has_monitor,
                                    monitor_end)
