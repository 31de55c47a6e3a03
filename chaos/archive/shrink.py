"""`chaos shrink`: delta debugging of a failing run's fault schedule, down to a minimal one.

A failing nightly run had, say, six partitions and lost writes; which of them mattered? The
shrinker re-runs the stored configuration (target, options, workload, cluster) with smaller
schedules and keeps a reduction when the same anomaly kind shows up again in at least one of
K tries (faults race with elections: one try that reproduces proves the smaller schedule can
fail; K tries that do not are taken as "it does not"). Reductions, in this order:

 1. drop events: ddmin (Zeller) over the recorded fault events: each half alone, then each
    complement, with finer chunks until no chunk can go;
 2. shorten windows: halve each remaining fault's length while it still reproduces (down to
    MIN_WINDOW_S);
 3. fewer nodes in a partition: a shape cutting the cluster in halves (halves, bridge, ring)
    becomes isolate-leader, then isolate-one (one node cut off).

Every candidate is pulled forward so its first fault starts where the original's first did
(the cluster has warmed up by then) and the run ends TAIL_S after its last fault heals:
shrink re-runs are as short as the remaining schedule allows. Each try has its own seed
(the original's + the try number), so K tries are K different interleavings.

The result: the minimal schedule, its reproduction rate over K fresh tries, and
OUT/config.json, which `chaos run --replay OUT` accepts. Ctrl-C (or --budget running out)
stops the search and keeps the best schedule found so far; OUT/shrink.json holds every step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from chaos import store
from chaos.archive.index import summarize
from chaos.errors import BadInput
from chaos.schedule import FaultSpec

MIN_WINDOW_S = 1.0
TAIL_S = 1.0
#: partition shapes that cut off one node: what a shape cutting the cluster in halves (or a
#: bridge, a ring) is reduced to, the leader first (the one that matters for failover)
FEWER_NODES = ("isolate-leader", "isolate-one")


@dataclass
class Trial:
    """One candidate schedule tried up to K times (stopping at the first reproduction)."""

    step: str
    schedule: list[FaultSpec]
    tries: int = 0
    reproduced: int = 0
    counts: list[int] = field(default_factory=list)   # anomalies of the kind per try
    run_dirs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "events": len(self.schedule),
                "schedule": [s.to_dict() for s in self.schedule], "tries": self.tries,
                "reproduced": self.reproduced, "counts": self.counts,
                "run_dirs": self.run_dirs, "seconds": round(self.seconds, 1)}


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a re-run: stop the search, keep the best so far."""


def compact(schedule: list[FaultSpec], lead: float) -> list[FaultSpec]:
    """The schedule moved so its first fault starts at `lead` s (relative offsets kept)."""
    if not schedule:
        return []
    shift = min(s.start_s for s in schedule) - lead
    return [replace(s, start_s=round(s.start_s - shift, 3), stop_s=round(s.stop_s - shift, 3))
            for s in sorted(schedule, key=lambda s: s.start_s)]


def shorter(spec: FaultSpec) -> FaultSpec | None:
    """The fault with half its window (None when that would go under MIN_WINDOW_S)."""
    length = (spec.stop_s - spec.start_s) / 2
    if length < MIN_WINDOW_S:
        return None
    return replace(spec, stop_s=round(spec.start_s + length, 3))


def fewer_nodes(spec: FaultSpec) -> list[FaultSpec]:
    """Partitions of the same fault cutting off fewer nodes (an empty list: nothing less)."""
    shape = spec.params.get("shape", "isolate-leader")
    if spec.kind != "partition" or spec.params.get("one_way") or shape in FEWER_NODES:
        return []
    return [replace(spec, params={**spec.params, "shape": s}) for s in FEWER_NODES]


class Shrinker:
    """Searches for a minimal schedule; `run_once(schedule, try_no)` returns the run
    directory of one re-run and how many anomalies of the kind it found (raising Interrupted
    on Ctrl-C). Injected so the search logic is tested without clusters."""

    def __init__(self, schedule: list[FaultSpec], *, tries: int, budget: float,
                 run_once: Callable[[list[FaultSpec], int], tuple[str, int]],
                 say: Callable[[str], None] = lambda line: None) -> None:
        if not schedule:
            raise BadInput("the run has no fault events: nothing to shrink")
        self.lead = min(s.start_s for s in schedule)
        self.best = compact(schedule, self.lead)
        self.tries = tries
        self.deadline = time.monotonic() + budget
        self.run_once = run_once
        self.say = say
        self.trials: list[Trial] = []
        self.stopped: str | None = None   # why the search ended early (budget, Ctrl-C)
        self.t0 = time.monotonic()

    # -- one candidate --------------------------------------------------------------------
    def test(self, step: str, candidate: list[FaultSpec]) -> bool:
        """Try `candidate` up to K times; True (and it becomes the best) when it reproduces."""
        if self.stopped:
            return False
        if time.monotonic() > self.deadline:
            self.stopped = "the --budget ran out"
            return False
        candidate = compact(candidate, self.lead)
        trial = Trial(step, candidate)
        self.trials.append(trial)
        start = time.monotonic()
        try:
            for i in range(self.tries):
                self.say(f"[{time.monotonic() - self.t0:6.0f} s] {step}: {len(candidate)} "
                         f"events, try {i + 1}/{self.tries}")
                run_dir, count = self.run_once(candidate, i)
                trial.tries += 1
                trial.counts.append(count)
                trial.run_dirs.append(run_dir)
                if count:
                    trial.reproduced += 1
                    break
        except Interrupted:
            self.stopped = "interrupted (Ctrl-C)"
        trial.seconds = time.monotonic() - start
        kept = trial.reproduced > 0
        self.say(f"[{time.monotonic() - self.t0:6.0f} s] {step}: "
                 + (f"reproduced ({trial.counts[-1]}): kept, best is now {len(candidate)} events"
                    if kept else f"not reproduced in {trial.tries} tries"))
        if kept:
            self.best = candidate
        return kept

    # -- the search -----------------------------------------------------------------------
    def run(self) -> list[FaultSpec]:
        """ddmin over the events, then shorter windows, then fewer nodes; the best schedule."""
        self.drop_events()
        for i in range(len(self.best)):
            while not self.stopped and i < len(self.best):
                spec = shorter(self.best[i])
                if spec is None or not self.test(f"shorten event {i + 1} to "
                                                 f"{spec.stop_s - spec.start_s:g} s",
                                                 self._with(i, spec)):
                    break
        for i in range(len(self.best)):
            for spec in fewer_nodes(self.best[i]):
                if self.test(f"event {i + 1}: partition {spec.params['shape']}",
                             self._with(i, spec)):
                    break
        return self.best

    def _with(self, i: int, spec: FaultSpec) -> list[FaultSpec]:
        return [spec if j == i else s for j, s in enumerate(self.best)]

    def drop_events(self) -> None:
        """ddmin: split into n chunks; keep a chunk alone or a complement that reproduces."""
        n = 2
        while len(self.best) >= 2 and not self.stopped:
            events = self.best
            size = len(events)
            bounds = [(size * k // n, size * (k + 1) // n) for k in range(n)]  # n <= size
            done = False
            for a, b in bounds:
                if self.test(f"keep events {a + 1}-{b} of {size}", events[a:b]):
                    n, done = 2, True
                    break
            if not done and n > 2:
                for a, b in bounds:
                    rest = events[:a] + events[b:]
                    if self.test(f"drop events {a + 1}-{b} of {size}", rest):
                        n, done = max(n - 1, 2), True
                        break
            if not done:
                if n >= size:
                    return
                n = min(2 * n, size)


def rate(run_once: Callable[[list[FaultSpec], int], tuple[str, int]],
         schedule: list[FaultSpec], tries: int, say: Callable[[str], None]) -> Trial:
    """The reproduction rate of `schedule` over `tries` fresh tries (all of them run)."""
    trial = Trial("rate", schedule)
    start = time.monotonic()
    for i in range(tries):
        say(f"rate of the minimal schedule: try {i + 1}/{tries}")
        try:
            run_dir, count = run_once(schedule, 1000 + i)
        except Interrupted:
            break
        trial.tries += 1
        trial.counts.append(count)
        trial.run_dirs.append(run_dir)
        trial.reproduced += count > 0
    trial.seconds = time.monotonic() - start
    return trial


def default_kind(run_dir: Path) -> str:
    """The failing run's most frequent anomaly kind (BadInput when it found none)."""
    summary = summarize(run_dir)
    if summary is None:
        raise BadInput(f"{run_dir}: not a run directory (no config.json)")
    if not summary.anomalies:
        raise BadInput(f"{run_dir}: the run found no anomaly ({summary.verdict}): "
                       "nothing to shrink towards")
    return max(summary.anomalies.items(), key=lambda kv: kv[1])[0]


def write_result(out: Path, original: Path, config_doc: dict[str, Any], kind: str,
                 shrinker: Shrinker, final: Trial | None) -> dict[str, Any]:
    """OUT/config.json (replayable: `chaos run --replay OUT`) and OUT/shrink.json."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(config_doc["config"])
    cfg["schedule"] = [s.to_dict() for s in shrinker.best]
    cfg["time_limit"] = time_limit(shrinker.best)
    store.write_json(out / "config.json", {**config_doc, "config": cfg,
                                           "shrunk_from": str(original)})
    doc = {"original": str(original), "kind": kind,
           "events": [len(config_doc["config"].get("schedule") or []), len(shrinker.best)],
           "schedule": cfg["schedule"], "time_limit": cfg["time_limit"],
           "rate": ({"reproduced": final.reproduced, "tries": final.tries,
                     "counts": final.counts} if final else None),
           "stopped": shrinker.stopped, "seconds": round(time.monotonic() - shrinker.t0, 1),
           "steps": [t.to_dict() for t in shrinker.trials] + ([final.to_dict()] if final
                                                               else [])}
    store.write_json(out / "shrink.json", doc)
    return doc


def time_limit(schedule: list[FaultSpec]) -> float:
    """Just past the last fault: the run needs no load after it beyond TAIL_S."""
    return round(max(s.stop_s for s in schedule) + TAIL_S, 3)


__all__ = ["Interrupted", "Shrinker", "Trial", "compact", "default_kind", "fewer_nodes",
           "rate", "shorter", "time_limit", "write_result"]
