"""The results document (`results_document`, one shape for every writer) and its reader.

`results_document` builds what results.json, `chaos analyze --json` and `chaos run --json`
contain. `normalize_results` reads it back for the report and JUnit:

The report and the JUnit writer are fed from two places: `chaos run` hands over the live
`CheckResult` objects, `chaos report` reads results.json back as dicts. Both go through
`normalize_results` so the rendering code sees exactly one shape and never has to guess.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from chaos.checkers.base import merge_valid

ANOMALY_FIELDS = ("kind", "message", "ops", "key", "time", "details", "explanation", "severity")


def _plain(obj: Any) -> Any:
    """A dict view of a CheckResult/Anomaly-like object (to_dict, dataclass) or the dict itself."""
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"not a checker result: {type(obj).__name__}")


def normalize_valid(value: Any) -> bool | str:
    """True / False stay; anything else (None, "unknown", "maybe") is "unknown", never valid."""
    if value is True or value is False:
        return value
    return "unknown"


def verdict_word(value: Any) -> str:
    """The word a person reads: "valid", "invalid" or "unknown"."""
    v = normalize_valid(value)
    return "valid" if v is True else "invalid" if v is False else "unknown"


def _anomaly(raw: Any) -> dict[str, Any]:
    a = _plain(raw)
    out = {k: a.get(k) for k in ANOMALY_FIELDS}
    out["kind"] = str(out["kind"] or "anomaly")
    out["message"] = str(out["message"] or "")
    out["ops"] = [int(i) for i in (out["ops"] or []) if isinstance(i, (int, float))]
    out["details"] = dict(out["details"] or {})
    out["severity"] = out["severity"] if out["severity"] in ("anomaly", "warning") else "anomaly"
    t = out["time"]
    out["time"] = int(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
    return out


def normalize_result(name: str, raw: Any) -> dict[str, Any]:
    """One checker's result as a dict with every CheckResult field present and typed."""
    r = _plain(raw)
    return {
        "checker": str(r.get("checker") or name),
        "valid": normalize_valid(r.get("valid")),
        "anomalies": [_anomaly(a) for a in (r.get("anomalies") or [])],
        "stats": dict(r.get("stats") or {}),
        "warnings": [str(w) for w in (r.get("warnings") or [])],
        "error": r.get("error"),
        "reasons": [str(w) for w in (r.get("reasons") or [])],  # why unknown (evidence rules)
    }


def normalize_results(results: Mapping[str, Any] | None) -> dict[str, Any]:
    """{"valid", "results": {name: result dict}, "notes"} from run_checkers' output or its JSON.

    `notes` collects run-level strings (top-level "reasons"/"warnings"/"errors"/"reason"/
    "error"), e.g. why a run whose checkers all passed is still unknown (a fault that was not
    verified, final reads that failed).

    A missing top-level "valid" is recomputed from the checkers (False > unknown > True); an
    empty result set is "unknown", because no checker having run proves nothing.
    """
    if results is None:
        results = {}
    if not isinstance(results, Mapping):
        raise TypeError("results must be a mapping with a 'results' entry")
    per = results.get("results") or {}
    if not isinstance(per, Mapping):
        raise TypeError("results['results'] must map checker names to results")
    checkers = {str(name): normalize_result(str(name), r) for name, r in per.items()}
    if "valid" in results:
        valid = normalize_valid(results["valid"])
    elif checkers:
        valid = normalize_valid(merge_valid([c["valid"] for c in checkers.values()]))
    else:
        valid = "unknown"
    notes = []
    for field in ("reasons", "warnings", "errors", "reason", "error"):
        v = results.get(field)
        if isinstance(v, str) and v:
            notes.append(v)
        elif isinstance(v, (list, tuple)):
            notes.extend(str(x) for x in v if x)
    return {"valid": valid, "results": checkers, "notes": notes}


# -- the one results document ---------------------------------------------------------------

#: the document's shape version (results.json, `chaos analyze --json`, `chaos run --json`)
SCHEMA = "chaos.results/1"


def results_document(outcome: Mapping[str, Any] | None, *, history: Any = None,
                     path: str | None = None, fmt: str | None = None,
                     run_dir: str | None = None, unverified: Any = (),
                     interrupted: bool = False) -> dict[str, Any]:
    """The results document every writer emits: results.json of a run and of `chaos analyze`,
    and the JSON of `chaos run --json` / `chaos analyze --json` (one shape, defined here).

    `outcome` is run_checkers' output (None for a run interrupted before its check). Keys:

        schema             SCHEMA
        valid              True | False | "unknown" (the merged verdict, all reasons included)
        exit_code          what the CLI exits with for it (DESIGN §9)
        reasons            why the verdict is unknown, most telling first (evidence rules,
                           faults not verified, an interrupted run); empty when decided
        warnings           the history's and the evidence rules' warnings
        path, history, format, ops   the input checked (ops = operations, not lines)
        run_dir, interrupted, unverified_faults   what `chaos run` adds (None/False/[] else)
        evidence           counts and thresholds of the evidence rules
        results            {checker name: CheckResult as a dict}
    """
    from chaos.errors import ExitCode, verdict_exit_code

    outcome = outcome or {}
    unverified = [str(u) for u in unverified or ()]
    reasons = [str(r) for r in outcome.get("reasons") or []]
    if interrupted:
        reasons.insert(0, "the run was interrupted before it could be checked")
    reasons += [f"fault not verified: {u}" for u in unverified]
    checkers = {str(name): _plain(r) for name, r in (outcome.get("results") or {}).items()}
    if interrupted:
        valid: Any = "unknown"
    else:
        base = outcome.get("valid", merge_valid([c.get("valid") for c in checkers.values()])
                           if checkers else "unknown")
        valid = normalize_valid(merge_valid([base] + (["unknown"] if reasons else [])))
    warnings = [str(w) for w in getattr(history, "warnings", None) or []]
    warnings += [str(w) for w in outcome.get("warnings") or [] if str(w) not in warnings]
    n_ops = getattr(history, "n_ops", None)
    return {
        "schema": SCHEMA,
        "valid": valid,
        "exit_code": int(ExitCode.UNKNOWN if interrupted else verdict_exit_code(valid)),
        "reasons": reasons,
        "warnings": warnings,
        "path": path,
        "history": getattr(history, "source", None),
        "format": fmt,
        "ops": int(n_ops) if n_ops is not None else None,
        "run_dir": run_dir,
        "interrupted": bool(interrupted),
        "unverified_faults": unverified,
        "evidence": dict(outcome.get("evidence") or {}),
        "results": checkers,
    }
