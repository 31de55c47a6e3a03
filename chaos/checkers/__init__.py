"""Checkers: pure functions from a history to a verdict (DESIGN §5), and their registry.

`CHECKERS` maps each checker's CLI name to its checker object. `select_checkers` picks the
ones a history calls for (or the ones the user named), and `run_checkers` runs them safely
(a crashing checker gives "unknown", never valid) and then explains every anomaly, once,
with intervals precomputed for the whole history.
"""
from __future__ import annotations

from typing import Any, Mapping

from chaos.checkers.base import Anomaly, Checker, CheckResult, compose, merge_valid
from chaos.checkers.counter import COUNTER
from chaos.checkers import evidence
from chaos.checkers.dual_leaders import DUAL_LEADERS
from chaos.checkers.explain import explain
from chaos.checkers.linearizable import LINEARIZABLE
from chaos.checkers.lost_writes import LOST_WRITES
from chaos.checkers.perf import PERF
from chaos.checkers.stale_reads import STALE_READS
from chaos.errors import BadInput
from chaos.history.model import History

#: checker name -> checker, in the order results are shown: safety checkers first, perf last.
CHECKERS: dict[str, Checker] = {
    "lost-writes": LOST_WRITES, "stale-reads": STALE_READS, "linearizable": LINEARIZABLE,
    "counter": COUNTER, "dual-leaders": DUAL_LEADERS, "perf": PERF,
}
ORDER = tuple(CHECKERS)


def select_checkers(history: History, names: list[str] | tuple[str, ...] | None = None
                    ) -> dict[str, Checker]:
    """The checkers to run on `history`, in display order.

    With `names` (the user's --checker values), exactly those; an unknown name is bad
    input naming it and the valid ones. Without, each checker's `applies` decides from
    the ops present (DESIGN §4): add/read-set -> lost-writes; read/write/cas -> stale-reads and
    linearizable; monitor status -> dual-leaders; perf whenever there are client ops.
    """
    if names:
        chosen: dict[str, Checker] = {}
        for name in names:
            if name not in CHECKERS:
                raise BadInput(f"unknown checker {name!r} (valid: {', '.join(CHECKERS)})")
            chosen[name] = CHECKERS[name]
        return {n: chosen[n] for n in ORDER if n in chosen}
    return {name: c for name, c in CHECKERS.items() if c.applies(history)}


#: checkers that measure but never judge: running only these proves nothing about safety
INFORMATIONAL = frozenset({"perf"})


#: the reason given when only informational checkers ran
NO_SAFETY_CHECKER = ("no checker applies to the ops in this history (perf only measures, it "
                     "does not judge)")


def run_checkers(history: History, checkers: Mapping[str, Checker],
                 opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run `checkers` on `history`.

    Returns {"valid": merged verdict, "results": {name: CheckResult}, "reasons": [why the
    verdict is unknown, most telling first], "warnings": [...], "evidence": {counts and
    thresholds}}. The checkers run through base.compose (each under check_safe: a crash is
    "unknown" with the traceback in `error`); then the evidence rules (chaos.checkers.evidence,
    docs/verdicts.md) turn a valid verdict without the evidence it needs into "unknown"; then
    every anomaly gets its explanation (a failure to explain is a warning, never a change of
    verdict). Thresholds of the evidence rules are read from `opts`.
    """
    out = compose(checkers, history, opts)
    return conclude(history, out["results"], opts)


def conclude(history: History, results: dict[str, CheckResult],
             opts: Mapping[str, Any] | None = None,
             facts: evidence.ClientFacts | None = None,
             end_of_history: int | None = None) -> dict[str, Any]:
    """The second half of run_checkers: evidence rules, explanations, merged verdict.

    `facts` and `end_of_history` are given when `history` holds only the non-client ops of a
    history checked in shards (chaos.checkers.sharded): the client ops' facts come merged.
    """
    ev = evidence.apply(history, results, opts, facts, end_of_history)
    anomalies: list[Anomaly] = [a for r in results.values() for a in r.anomalies]
    if anomalies:
        try:
            explain(history, anomalies, end_of_history=end_of_history)
        except Exception as exc:  # noqa: BLE001 - explanations are a courtesy, not a verdict
            for r in results.values():
                if r.anomalies:
                    r.warnings.append(f"could not explain anomalies: {type(exc).__name__}: {exc}")
    reasons = list(ev.reasons)
    if not set(results) - INFORMATIONAL:
        # Only statistics ran (or nothing): no safety property was checked, so the history
        # has not earned "valid" (e.g. an imported workload none of our models understands).
        reasons.append(NO_SAFETY_CHECKER)
    valid = merge_valid([r.valid for r in results.values()] + (["unknown"] if reasons else []))
    return {"valid": valid, "results": results, "reasons": reasons,
            "warnings": list(ev.warnings), "evidence": ev.stats}


__all__ = ["CHECKERS", "INFORMATIONAL", "ORDER", "Anomaly", "CheckResult", "Checker", "conclude",
           "explain", "run_checkers", "select_checkers"]
