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

from chaos.checkers._frame import Kinds, hashable
from chaos.checkers.base import UNKNOWN, CheckResult
from chaos.history.faults import NODE_OUT, fault_windows
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


# -- the client facts the rules read (mergeable: chaos.checkers.sharded) ---------------------

@dataclass
class ClientFacts:
    """What the rules read from the client ops, as counts and short lists.

    Computed from a History by `client_facts`, or from the shards of a big history one at a
    time and merged with `merge` (chaos.checkers.sharded): the rules below read only this,
    so both paths judge alike.
    """

    ops: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    ok_reads: int = 0
    ok_read_sets: int = 0
    #: the (key, node)s whose final reads all failed (missed_finals)
    final_gaps: list[Missed] = field(default_factory=list)
    load_first: int | None = None
    load_last: int | None = None
    #: (invoke time, type) of the load ops that may fall in the last `tail_ns` of the load
    tail: list[tuple[int, str]] = field(default_factory=list)
    tail_ns: int = 0

    def merge(self, other: "ClientFacts") -> None:
        """Add `other` (the facts of disjoint client ops, same tail_ns) into self."""
        for name in ("ops", "ok", "fail", "info", "ok_reads", "ok_read_sets"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.final_gaps = sorted(self.final_gaps + other.final_gaps, key=lambda m: m[0])
        if other.load_first is not None and other.load_last is not None:
            self.load_first = (other.load_first if self.load_first is None
                               else min(self.load_first, other.load_first))
            self.load_last = (other.load_last if self.load_last is None
                              else max(self.load_last, other.load_last))
        assert self.load_last is not None or not other.tail
        cut = (self.load_last or 0) - self.tail_ns
        self.tail = [x for x in self.tail + other.tail if x[0] >= cut]


def client_facts(pairs: pd.DataFrame, tail_s: float,
                 kinds: Kinds | None = None) -> ClientFacts:
    """The ClientFacts of the client ops in `pairs` (`kinds`: their Kinds, when the caller
    has them)."""
    client = client_mask(pairs["process"])
    if kinds is None:
        kinds = Kinds(pairs)
    types = pairs["type"].to_numpy()
    ok = kinds.type("ok")[client]
    facts = ClientFacts(ops=int(client.sum()), ok=int(ok.sum()),
                        fail=int(kinds.type("fail")[client].sum()),
                        info=int(kinds.type("info")[client].sum()),
                        ok_reads=int((ok & kinds.f("read")[client]).sum()),
                        ok_read_sets=int((ok & kinds.f("read-set")[client]).sum()),
                        final_gaps=missed_finals(pairs, kinds),
                        tail_ns=int(tail_s * NS_PER_S))
    load = client & ~pairs["final"].to_numpy().astype(bool)
    if load.any():
        inv = pairs["invoke_time"].to_numpy()[load]
        facts.load_first, facts.load_last = int(inv.min()), int(inv.max())
        near = inv >= facts.load_last - facts.tail_ns
        facts.tail = list(zip(inv[near].tolist(), types[load][near].tolist()))
    return facts


# -- per checker -----------------------------------------------------------------------------

#: a (key, node) whose final reads were all attempted in vain: (invoke index of the first,
#: key, node, attempts, type and error of the last)
Missed = tuple[int, Any, Any, int, Any, Any]


def missed_finals(pairs: pd.DataFrame, kinds: Kinds | None = None) -> list[Missed]:
    """Every (key, node) whose final read-sets were attempted and none came back ok, in the
    order of their first attempt (mergeable: a key's ops are all in one shard)."""
    read_sets = (kinds.f("read-set") if kinds is not None
                 else pairs["f"].to_numpy() == "read-set")
    if not read_sets.any():
        return []
    final = pairs["final"].to_numpy().astype(bool)
    rows = np.flatnonzero(read_sets & final)
    if not len(rows):
        return []
    sub = pairs.iloc[rows]
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, (key, node) in enumerate(zip(sub["key"], sub["node"])):
        groups.setdefault((hashable(key), hashable(node)), []).append(i)
    types = sub["type"].to_numpy()
    errors = sub["error"].to_numpy()
    first_index = sub["invoke_index"].to_numpy()
    return [(int(first_index[pos[0]]), key, node, len(pos), types[pos[-1]], errors[pos[-1]])
            for (key, node), pos in groups.items() if not any(types[p] == "ok" for p in pos)]


def final_read_gaps(pairs: pd.DataFrame) -> list[str]:
    """Nodes whose final read-sets of some key were attempted and none came back ok."""
    return gap_texts(missed_finals(pairs))


def gap_texts(missed: list[Missed]) -> list[str]:
    """One reason per node, naming the key when there is one (a workload that rotates keys
    reads thousands per node: a dead node is one reason, with how many keys and the first
    few)."""
    per_node: dict[Any, list[Missed]] = {}
    for m in missed:
        per_node.setdefault(m[2], []).append(m)
    out = []
    for node, ms in per_node.items():
        on = f"on {node}" if node is not None else "without a node"
        last = ms[-1]
        why = (f"none came back ok (last: {_error_text(last[4], last[5])}): what "
               f"{node or 'it'} holds cannot be judged, so lost writes there are unknown")
        if len(ms) == 1:
            key, n = ms[0][1], ms[0][3]
            of = f" of key {key!r}" if key is not None else ""
            out.append(f"final reads{of} {on} were attempted {n} time(s) and {why}")
        else:
            names = ", ".join(repr(m[1]) for m in ms[:MAX_KEYS_NAMED])
            more = ", ..." if len(ms) > MAX_KEYS_NAMED else ""
            out.append(f"final reads of {len(ms)} keys ({names}{more}) {on} were "
                       f"attempted and {why}")
    return out


def checker_gaps(name: str, facts: ClientFacts, result: CheckResult,
                 mon: pd.DataFrame, expect_finals: bool = False) -> list[str]:
    """Why `result` lacks the evidence its checker needs (empty: it has it).

    `expect_finals`: the run's workload takes final reads (opts "final_reads_expected", set
    by chaos run), so a history without any is missing them, not an imported one without.
    """
    stats = result.stats or {}
    if name == "lost-writes":
        out = []
        if facts.ok_read_sets == 0:
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
        return out + gap_texts(facts.final_gaps)
    if name in ("stale-reads", "counter"):
        if facts.ok_reads == 0:
            return [f"no read came back ok: {name} had nothing to judge"]
        return []
    if name == "dual-leaders":
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
    """True when every node was inside a fault holding it out (NODE_OUT: kill, pause,
    membership) from the first unanswered poll of the span to the last."""
    covered: set[Any] = set()
    for w in windows:
        if w.kind not in NODE_OUT or w.start > start or w.end < end:
            continue
        v = w.value if isinstance(w.value, dict) else {"nodes": w.value}
        who = v.get("node", v.get("nodes"))
        if isinstance(who, list):
            covered.update(who)
        elif who is not None:
            covered.add(who)
    return bool(nodes) and nodes <= covered


def monitor_gaps(history: History, limit_s: float, mon: pd.DataFrame | None = None,
                 end_of_history: int | None = None) -> tuple[list[str], list[str]]:
    """(reasons, warnings) for spans in which no node answered the monitor (`end_of_history`:
    the history's last time when `history` holds only part of it, see fault_windows)."""
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
        if not inside.any():  # every poll of the span was answered, but only after it ended
            inside = (inv > start) & (inv < end)
        polls = inv[inside]  # the unanswered polls: what faults must cover
        span = (f"from {_s(start)} to the end of the monitoring ({_s(end)})" if to_end
                else f"from {_s(start)} to {_s(end)}")
        last = mon[inside].tail(len(nodes) or 1)
        errs = "; ".join(f"{n}: {_error_text(t, e)}" for n, t, e in
                         zip(last["node"], last["type"], last["error"]))
        text = (f"no node answered the monitor for {(end - start) / NS_PER_S:.1f} s, {span} "
                f"(limit {limit_s:g} s; {errs})")
        if windows is None:
            windows = fault_windows(history, end_of_history)
        # a restarted node may take a moment to answer again: the last second is forgiven
        last_poll = max(int(polls.min()), int(polls.max()) - RESTART_GRACE_NS)
        if _explained(int(polls.min()), last_poll, windows, nodes):
            warnings.append(text + ": every node was killed, paused or removed by the nemesis "
                            "meanwhile")
        else:
            reasons.append(text + ": the cluster stopped answering")
    return reasons, warnings


def failing_tail(facts: ClientFacts, tail_s: float) -> list[str]:
    """Every client op (final reads aside) of the last tail_s of the load was not ok."""
    if facts.load_first is None or facts.load_last is None:
        return []
    first, last = facts.load_first, facts.load_last
    tail = int(tail_s * NS_PER_S)
    if last - first <= tail:
        return []  # the load was not longer than the window: the ok-ops floor judges it
    types = [t for inv, t in facts.tail if inv >= last - tail]
    if "ok" in types:
        return []
    n = len(types)
    fails = types.count("fail")
    return [f"every client operation of the last {tail_s:g} s of the load failed or timed out "
            f"({n} ops from {_s(last - tail)} to {_s(last)}: {fails} fail, {n - fails} info): "
            f"the cluster stopped serving clients"]


def ok_floor(facts: ClientFacts, floor: int) -> list[str]:
    if facts.ok >= floor:
        return []
    return [f"only {facts.ok} client operation(s) came back ok (of {facts.ops}: "
            f"{facts.fail} fail, {facts.info} info; "
            f"the floor is {floor}): too little evidence for a verdict of valid"]


def assess(history: History, results: Mapping[str, CheckResult],
           opts: Mapping[str, Any] | None = None, facts: ClientFacts | None = None,
           end_of_history: int | None = None) -> Evidence:
    """Apply every rule to a checked history; nothing is changed (see `apply`).

    `facts`: the client facts when `history` holds only the non-client ops of a history read
    in shards (chaos.checkers.sharded), with `end_of_history` its last time.
    """
    th = Thresholds.from_opts(opts)
    pairs = history.pairs
    if facts is None:
        facts = client_facts(pairs, th.failing_tail_s)
    ev = Evidence()
    ev.reasons += cluster_down_records(pairs)
    mon = monitor_frame(pairs)
    dead, dead_warn = monitor_gaps(history, th.dead_after_s, mon, end_of_history)
    ev.reasons += dead
    ev.warnings += dead_warn
    ev.reasons += failing_tail(facts, th.failing_tail_s)
    if facts.ops or set(results) - MONITOR_ONLY:  # a monitor-only history has no clients
        ev.reasons += ok_floor(facts, th.min_ok_ops)
    for name, r in results.items():
        gaps = checker_gaps(name, facts, r, mon, bool((opts or {}).get("final_reads_expected")))
        if gaps:
            ev.checkers[name] = gaps
    ev.stats = {"client_ops": facts.ops, "ok_client_ops": facts.ok, "thresholds": asdict(th)}
    return ev


def apply(history: History, results: Mapping[str, CheckResult],
          opts: Mapping[str, Any] | None = None, facts: ClientFacts | None = None,
          end_of_history: int | None = None) -> Evidence:
    """Assess, then mark each result that lacks its evidence: reasons recorded on it, and a
    True verdict becomes "unknown" (False stays). Returns the Evidence for the run level."""
    ev = assess(history, results, opts, facts, end_of_history)
    for name, gaps in ev.checkers.items():
        r = results[name]
        r.reasons = [*r.reasons, *gaps]
        if r.valid is True:
            r.valid = UNKNOWN
    return ev
