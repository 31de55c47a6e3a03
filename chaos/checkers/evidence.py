"""Evidence rules: a verdict is "valid" only on the evidence it needs (docs/verdicts.md).

A checker that finds nothing wrong has only shown that the ops it read contain no anomaly; if
the ops it needs are missing (the final reads failed, every op timed out, the cluster was dead)
that "nothing wrong" proves nothing. This module is the one place those rules live: every
verdict (`chaos run`, `chaos analyze`, the report) goes through `apply` from run_checkers.

Per checker (a checker result that was True becomes "unknown", with the reason in `reasons`;
False stays False: an anomaly found is real whatever else is missing):

- lost-writes: some read-set came back ok and some add was acknowledged (or observed); every
  acknowledged add was followed by a read-set that could show it (none "never read"); on every
  node where final reads of a key were attempted, at least one came back ok (a node whose final
  reads all failed or timed out is named: what it holds cannot be judged, and the checker never
  judges it from an older read instead); and when the run's workload takes final reads (opts
  "final_reads_expected"), the history has some.
- stale-reads, counter: some read came back ok.
- dual-leaders: the monitor got at least one answer.

Per history (they make the whole verdict "unknown", reasons listed first in the document):

- the controller recorded that the cluster went down during the run (chaos.liveness: an op of
  process "controller", f "cluster-down", naming what died and when);
- no node answered the monitor for longer than `dead_after_s` (default 5 s), unless every node
  was inside a kill or pause fault meanwhile (the nemesis did it and undid it: a warning; a
  node gets 1 s after its restart to answer again);
- every client op of the last `failing_tail_s` (default 5 s) of the load failed or timed out,
  in a history whose load lasted longer than that (final reads are judged on their own);
- fewer than `min_ok_ops` (default 1) client ops came back ok (not asked of a history of
  monitor observations alone, judged by dual-leaders only).

The thresholds are read from the checker options (`opts`), under the names above.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from chaos.checkers._frame import hashable
from chaos.checkers.base import UNKNOWN, CheckResult
from chaos.history.faults import fault_windows
from chaos.history.leadership import monitor_frame
from chaos.history.model import OPEN, History, client_mask

NS_PER_S = 1_000_000_000
#: the process and f of the controller's own record that the cluster went down
CONTROLLER = "controller"
CLUSTER_DOWN = "cluster-down"
#: unanswered monitor polls this soon after a kill/pause window ended still count as its doing
RESTART_GRACE_NS = NS_PER_S
#: checkers that read no client op (a history of monitor observations alone is judged by them)
MONITOR_ONLY = frozenset({"dual-leaders", "perf"})
#: keys named in a reason about a node's missing final reads (the rest are counted)
MAX_KEYS_NAMED = 5


@dataclass(frozen=True)
class Thresholds:
    """The configurable limits of the evidence rules (names = the `opts` keys)."""

    min_ok_ops: int = 1           # fewer ok client ops than this: unknown
    dead_after_s: float = 5.0     # no monitor answer from any node for longer: unknown
    failing_tail_s: float = 5.0   # every client op of the last S seconds not ok: unknown

    @classmethod
    def from_opts(cls, opts: Mapping[str, Any] | None) -> "Thresholds":
        opts = opts or {}
        d = cls()
        return cls(min_ok_ops=int(opts.get("min_ok_ops", d.min_ok_ops)),
                   dead_after_s=float(opts.get("dead_after_s", d.dead_after_s)),
                   failing_tail_s=float(opts.get("failing_tail_s", d.failing_tail_s)))


@dataclass
class Evidence:
    """What the rules found: run-level reasons, per-checker reasons, warnings and counts."""

    reasons: list[str] = field(default_factory=list)
    checkers: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(ns: int) -> str:
    return f"{ns / NS_PER_S:.3f} s"


def _error_text(typ: Any, error: Any) -> str:
    return f"{typ}" + (f" {str(error)[:80]!r}" if error else "")


# -- per checker -----------------------------------------------------------------------------

def final_read_gaps(pairs: pd.DataFrame) -> list[str]:
    """Nodes whose final read-sets of some key were attempted and none came back ok: one
    reason per node, naming the key when there is one (a workload that rotates keys reads
    thousands per node: a dead node is one reason, with how many keys and the first few)."""
    f = pairs["f"].to_numpy()
    final = pairs["final"].to_numpy().astype(bool)
    rows = np.flatnonzero((f == "read-set") & final)
    if not len(rows):
        return []
    sub = pairs.iloc[rows]
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, (key, node) in enumerate(zip(sub["key"], sub["node"])):
        groups.setdefault((hashable(key), hashable(node)), []).append(i)
    types = sub["type"].to_numpy()
    errors = sub["error"].to_numpy()
    per_node: dict[Any, list[tuple[Any, list[int]]]] = {}
    for (key, node), pos in groups.items():
        if not any(types[p] == "ok" for p in pos):
            per_node.setdefault(node, []).append((key, pos))
    out = []
    for node, missed in per_node.items():
        on = f"on {node}" if node is not None else "without a node"
        last = missed[-1][1][-1]
        why = (f"none came back ok (last: {_error_text(types[last], errors[last])}): what "
               f"{node or 'it'} holds cannot be judged, so lost writes there are unknown")
        if len(missed) == 1:
            key, pos = missed[0]
            of = f" of key {key!r}" if key is not None else ""
            out.append(f"final reads{of} {on} were attempted {len(pos)} time(s) and {why}")
        else:
            names = ", ".join(repr(k) for k, _ in missed[:MAX_KEYS_NAMED])
            more = ", ..." if len(missed) > MAX_KEYS_NAMED else ""
            out.append(f"final reads of {len(missed)} keys ({names}{more}) {on} were "
                       f"attempted and {why}")
    return out


def _ok_count(pairs: pd.DataFrame, fs: tuple[str, ...], client: np.ndarray) -> int:
    return int((client & pairs["f"].isin(fs).to_numpy()
                & (pairs["type"].to_numpy() == "ok")).sum())


def checker_gaps(name: str, history: History, result: CheckResult,
                 client: np.ndarray, expect_finals: bool = False,
                 mon: pd.DataFrame | None = None) -> list[str]:
    """Why `result` lacks the evidence its checker needs (empty: it has it).

    `expect_finals`: the run's workload takes final reads (opts "final_reads_expected", set
    by chaos run), so a history without any is missing them, not an imported one without.
    """
    pairs = history.pairs
    stats = result.stats or {}
    if name == "lost-writes":
        out = []
        if _ok_count(pairs, ("read-set",), client) == 0:
            out.append("no read-set came back ok: nothing can be judged lost")
        elif not stats.get("acknowledged") and not stats.get("observed"):
            out.append("no add was acknowledged or observed: nothing could be lost")
        elif stats.get("never_read"):
            out.append(f"{stats['never_read']} acknowledged add(s) were never read afterwards "
                       f"(no read-set was invoked after their acknowledgement): their fate is "
                       f"unknown")
        if expect_finals and not stats.get("final_reads_attempted"):
            out.append("the workload takes final reads, but the history has none: what the "
                       "cluster kept after healing was never read")
        return out + final_read_gaps(pairs)
    if name in ("stale-reads", "counter"):
        if _ok_count(pairs, ("read",), client) == 0:
            return [f"no read came back ok: {name} had nothing to judge"]
        return []
    if name == "dual-leaders":
        mon = monitor_frame(pairs) if mon is None else mon
        if not (mon["type"].to_numpy() == "ok").any():
            return ["the monitor got no answer from any node: leadership cannot be judged"]
    return []


# -- per history -----------------------------------------------------------------------------

def cluster_down_records(pairs: pd.DataFrame) -> list[str]:
    """The controller's own "cluster-down" records (chaos.liveness), as their messages."""
    rows = pairs[(pairs["process"].isin((CONTROLLER,))
                  & pairs["f"].isin((CLUSTER_DOWN,))).to_numpy()]
    out = []
    for value, result, t in zip(rows["value"], rows["result"], rows["invoke_time"]):
        v = result if isinstance(result, dict) else value if isinstance(value, dict) else {}
        out.append(str(v.get("message") or f"the cluster went down at {_s(int(t))}"))
    return out


def _dead_spans(mon: pd.DataFrame, limit_ns: int) -> list[tuple[int, int, bool]]:
    """(start, end, reaches the end) of spans longer than limit_ns with no ok observation
    while the monitor kept polling."""
    inv = mon["invoke_time"].to_numpy()
    cmp = mon["complete_time"].to_numpy()
    ok = mon["type"].to_numpy() == "ok"
    seen = np.where(cmp != OPEN, cmp, inv)
    last_poll = int(seen.max())
    answers = np.sort(seen[ok])
    first_poll = int(inv.min())
    edges = np.concatenate(([first_poll], answers, [last_poll]))
    gaps = np.diff(edges)
    out = []
    for j in np.flatnonzero(gaps > limit_ns).tolist():
        a, b = int(edges[j]), int(edges[j + 1])
        if ((inv > a) & (inv < b)).any():
            out.append((a, b, j == len(gaps) - 1))
    return out


def _explained(start: int, end: int, windows: list[Any], nodes: set[Any]) -> bool:
    """True when every node was inside a kill or pause fault from the first unanswered poll
    of the span to the last."""
    covered: set[Any] = set()
    for w in windows:
        if w.kind not in ("kill", "pause") or w.start > start or w.end < end:
            continue
        v = w.value if isinstance(w.value, dict) else {"nodes": w.value}
        who = v.get("node", v.get("nodes"))
        if isinstance(who, list):
            covered.update(who)
        elif who is not None:
            covered.add(who)
    return bool(nodes) and nodes <= covered


def monitor_gaps(history: History, limit_s: float,
                 mon: pd.DataFrame | None = None) -> tuple[list[str], list[str]]:
    """(reasons, warnings) for spans in which no node answered the monitor."""
    mon = monitor_frame(history.pairs) if mon is None else mon
    if mon.empty:
        return [], []
    reasons, warnings = [], []
    nodes = {n for n in mon["node"] if n is not None}
    windows = None
    inv = mon["invoke_time"].to_numpy()
    unanswered = mon["type"].to_numpy() != "ok"
    for start, end, to_end in _dead_spans(mon, int(limit_s * NS_PER_S)):
        inside = unanswered & (inv > start) & (inv < end)
        polls = inv[inside]  # the unanswered polls: what faults must cover
        span = (f"from {_s(start)} to the end of the monitoring ({_s(end)})" if to_end
                else f"from {_s(start)} to {_s(end)}")
        last = mon[inside].tail(len(nodes) or 1)
        errs = "; ".join(f"{n}: {_error_text(t, e)}" for n, t, e in
                         zip(last["node"], last["type"], last["error"]))
        text = (f"no node answered the monitor for {(end - start) / NS_PER_S:.1f} s, {span} "
                f"(limit {limit_s:g} s; {errs})")
        if windows is None:
            windows = fault_windows(history)
        # a restarted node may take a moment to answer again: the last second is forgiven
        last_poll = max(int(polls.min()), int(polls.max()) - RESTART_GRACE_NS)
        if _explained(int(polls.min()), last_poll, windows, nodes):
            warnings.append(text + ": every node was killed or paused by the nemesis meanwhile")
        else:
            reasons.append(text + ": the cluster stopped answering")
    return reasons, warnings


def failing_tail(pairs: pd.DataFrame, client: np.ndarray, tail_s: float) -> list[str]:
    """Every client op (final reads aside) of the last tail_s of the load was not ok."""
    load = client & ~pairs["final"].to_numpy().astype(bool)
    if not load.any():
        return []
    inv = pairs["invoke_time"].to_numpy()[load]
    types = pairs["type"].to_numpy()[load]
    first, last = int(inv.min()), int(inv.max())
    tail = int(tail_s * NS_PER_S)
    if last - first <= tail:
        return []  # the load was not longer than the window: the ok-ops floor judges it
    in_tail = inv >= last - tail
    if (types[in_tail] == "ok").any():
        return []
    n = int(in_tail.sum())
    fails = int((types[in_tail] == "fail").sum())
    return [f"every client operation of the last {tail_s:g} s of the load failed or timed out "
            f"({n} ops from {_s(last - tail)} to {_s(last)}: {fails} fail, {n - fails} info): "
            f"the cluster stopped serving clients"]


def ok_floor(pairs: pd.DataFrame, client: np.ndarray, floor: int) -> list[str]:
    types = pairs["type"].to_numpy()[client]
    ok = int((types == "ok").sum())
    if ok >= floor:
        return []
    n = int(len(types))
    return [f"only {ok} client operation(s) came back ok (of {n}: "
            f"{int((types == 'fail').sum())} fail, {int((types == 'info').sum())} info; "
            f"the floor is {floor}): too little evidence for a verdict of valid"]


def assess(history: History, results: Mapping[str, CheckResult],
           opts: Mapping[str, Any] | None = None) -> Evidence:
    """Apply every rule to a checked history; nothing is changed (see `apply`)."""
    th = Thresholds.from_opts(opts)
    pairs = history.pairs
    client = client_mask(pairs["process"])
    ev = Evidence()
    ev.reasons += cluster_down_records(pairs)
    mon = monitor_frame(pairs)
    dead, dead_warn = monitor_gaps(history, th.dead_after_s, mon)
    ev.reasons += dead
    ev.warnings += dead_warn
    ev.reasons += failing_tail(pairs, client, th.failing_tail_s)
    if client.any() or set(results) - MONITOR_ONLY:  # a monitor-only history has no clients
        ev.reasons += ok_floor(pairs, client, th.min_ok_ops)
    for name, r in results.items():
        gaps = checker_gaps(name, history, r, client,
                            bool((opts or {}).get("final_reads_expected")), mon)
        if gaps:
            ev.checkers[name] = gaps
    types = pairs["type"].to_numpy()[client]
    ev.stats = {"client_ops": int(client.sum()), "ok_client_ops": int((types == "ok").sum()),
                "thresholds": asdict(th)}
    return ev


def apply(history: History, results: Mapping[str, CheckResult],
          opts: Mapping[str, Any] | None = None) -> Evidence:
    """Assess, then mark each result that lacks its evidence: reasons recorded on it, and a
    True verdict becomes "unknown" (False stays). Returns the Evidence for the run level."""
    ev = assess(history, results, opts)
    for name, gaps in ev.checkers.items():
        r = results[name]
        r.reasons = [*r.reasons, *gaps]
        if r.valid is True:
            r.valid = UNKNOWN
    return ev
