"""What every checker returns, and how results combine (Jepsen's checker.clj, typed).

A checker is a pure function of a history: `check(history, opts) -> CheckResult`. It knows
nothing about runtimes, proxies or targets. `valid` is True, False or "unknown"; merging ranks
False > "unknown" > True, so an undecided checker can never make a run look valid.
"""
from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol

from chaos.history.model import History

Valid = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"


@dataclass
class Anomaly:
    """One thing that went wrong, with the evidence a person needs to believe it.

    kind:        short machine name ("lost-write", "stale-read", "same-term-leaders", ...)
    message:     one readable sentence
    ops:         `index` values of the history lines involved (invoke and completion lines)
    key:         the key concerned, if any
    time:        ns since test start where it shows (for plots and for the explanation)
    details:     checker-specific facts (lag_ns, element, terms, ...)
    explanation: filled by chaos.checkers.explain: faults and leaders around `time`
    severity:    "anomaly" (makes the run invalid) or "warning" (reported, verdict unaffected)
    """

    kind: str
    message: str
    ops: list[int] = field(default_factory=list)
    key: Any = None
    time: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    explanation: str | None = None
    severity: Literal["anomaly", "warning"] = "anomaly"


@dataclass
class CheckResult:
    """A checker's verdict. `stats` holds counts; `anomalies` are ordered by time.

    `reasons` says why the verdict is not "valid" for lack of evidence (filled by
    chaos.checkers.evidence: e.g. the final reads of a node all failed); a checker that is
    "unknown" on its own (a search budget ran out) may put its reason there too.
    """

    checker: str
    valid: Valid
    anomalies: list[Anomaly] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # set when the checker crashed (valid is then "unknown")
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Checker(Protocol):
    """A checker: a name, whether it applies to a history, and the pure check."""

    name: str

    def applies(self, history: History) -> bool:
        """True when the history has the ops this checker reads (used for auto-selection)."""
        ...

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        """Judge the history. Must not mutate it; files go only under opts["out_dir"]."""
        ...


def merge_valid(values: list[Valid]) -> Valid:
    """False beats "unknown" beats True; an empty list is True."""
    if any(v is False for v in values):
        return False
    if any(v != True for v in values):  # noqa: E712 - "unknown" or anything unexpected
        return UNKNOWN
    return True


def check_safe(checker: Checker, history: History,
               opts: Mapping[str, Any] | None = None) -> CheckResult:
    """Run a checker; a crash becomes an "unknown" result carrying the traceback, never valid."""
    try:
        return checker.check(history, opts or {})
    except Exception as exc:  # noqa: BLE001 - a checker bug must not hide the other verdicts
        return CheckResult(checker=checker.name, valid=UNKNOWN,
                           error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def compose(checkers: Mapping[str, Checker], history: History,
            opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run several checkers safely; return {"valid": merged, "results": {name: CheckResult}}."""
    results = {name: check_safe(c, history, opts) for name, c in checkers.items()}
    return {"valid": merge_valid([r.valid for r in results.values()]), "results": results}


CheckFn = Callable[[History, Mapping[str, Any]], CheckResult]
