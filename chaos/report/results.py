"""Normalise checker results (objects or results.json dicts) into one plain-dict shape.

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
    }


def normalize_results(results: Mapping[str, Any] | None) -> dict[str, Any]:
    """{"valid", "results": {name: result dict}, "notes"} from run_checkers' output or its JSON.

    `notes` collects run-level strings (top-level "warnings"/"errors"/"reason"/"error"), e.g.
    why a run whose checkers all passed is still unknown (a fault that was not verified).

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
    for field in ("warnings", "errors", "reason", "error"):
        v = results.get(field)
        if isinstance(v, str) and v:
            notes.append(v)
        elif isinstance(v, (list, tuple)):
            notes.extend(str(x) for x in v if x)
    return {"valid": valid, "results": checkers, "notes": notes}
