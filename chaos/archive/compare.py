"""`chaos compare`: what changed between two runs: config, verdicts, anomaly counts, perf.

Works on the run directories themselves (config.json, results.json), so any two runs compare,
indexed or not. The document (`compare_runs`) is what `--json` prints; `format_comparison`
is the text a person reads, changes only (an unchanged field is not news).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import orjson

from chaos.archive.index import summarize
from chaos.errors import BadInput
from chaos.report.results import verdict_word

#: config keys that differ between any two runs and say nothing about what was tested
NOT_CONFIG = {"store", "test_name"}
PERF_FIELDS = ("ops", "ops_per_s", "duration_s")


def _load(run: str | Path, what: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    path = Path(run)
    try:
        config = orjson.loads((path / "config.json").read_bytes())
    except FileNotFoundError:
        raise BadInput(f"{what} {run}: not a run directory (no config.json)") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BadInput(f"cannot read: {exc}", where=str(path / "config.json")) from None
    try:
        results = orjson.loads((path / "results.json").read_bytes())
    except FileNotFoundError:
        results = None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BadInput(f"cannot read: {exc}", where=str(path / "results.json")) from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise BadInput("no \"config\" object: not a chaos run's config.json",
                       where=str(path / "config.json"))
    return config["config"], results if isinstance(results, dict) else None


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare_runs(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """The differences between two run directories (see the module doc), as a document:

        runs       [a, b]
        config     {key: [a, b]} for every differing key (options flattened: target_options.x;
                   the schedule compared as a whole, with its event counts)
        verdict    [a, b]; checkers {name: [a, b]} (every checker, changed or not)
        anomalies  {kind: [a, b, b - a]} for every kind in either run
        perf       {field: [a, b, relative change]}: ops, ops/s, duration, latency quantiles
    """
    cfg_a, res_a = _load(run_a, "RUN_A")
    cfg_b, res_b = _load(run_b, "RUN_B")
    sa, sb = summarize(Path(run_a)), summarize(Path(run_b))
    assert sa is not None and sb is not None  # both have a config.json (_load)
    fa = _flat({k: v for k, v in cfg_a.items() if k not in NOT_CONFIG | {"schedule"}})
    fb = _flat({k: v for k, v in cfg_b.items() if k not in NOT_CONFIG | {"schedule"}})
    config = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb))
              if fa.get(k) != fb.get(k)}
    if (cfg_a.get("schedule") or []) != (cfg_b.get("schedule") or []):
        config["schedule"] = [f"{len(cfg_a.get('schedule') or [])} fault events",
                              f"{len(cfg_b.get('schedule') or [])} fault events"]
    per_a = (res_a or {}).get("results") or {}
    per_b = (res_b or {}).get("results") or {}
    checkers = {name: [verdict_word(per[name].get("valid")) if name in per else "absent"
                       for per in (per_a, per_b)]
                for name in sorted(set(per_a) | set(per_b))}
    kinds = sorted(set(sa.anomalies) | set(sb.anomalies))
    anomalies = {k: [sa.anomalies.get(k, 0), sb.anomalies.get(k, 0),
                     sb.anomalies.get(k, 0) - sa.anomalies.get(k, 0)] for k in kinds}
    perf: dict[str, list[Any]] = {}
    pairs = [(f, getattr(sa, f), getattr(sb, f)) for f in PERF_FIELDS]
    pairs += [(f"latency_{q}_ms", sa.latency_ms.get(q), sb.latency_ms.get(q))
              for q in ("p50", "p95", "p99", "max")]
    for name, a, b in pairs:
        rel = round((b - a) / a, 4) if isinstance(a, (int, float)) and \
            isinstance(b, (int, float)) and a else None
        perf[name] = [a, b, rel]
    return {"runs": [str(run_a), str(run_b)], "config": config,
            "verdict": [sa.verdict, sb.verdict], "checkers": checkers,
            "anomalies": anomalies, "perf": perf,
            "reasons": [sa.reasons, sb.reasons]}


def format_comparison(doc: Mapping[str, Any]) -> str:
    """The comparison as text: A and B, then only what differs, perf always."""
    a, b = doc["runs"]
    lines = [f"A: {a}", f"B: {b}"]
    va, vb = doc["verdict"]
    lines.append(f"verdict: {va} -> {vb}" if va != vb else f"verdict: {va} (both)")
    for i, reasons in enumerate(doc["reasons"]):
        for r in reasons:
            lines.append(f"  {'AB'[i]} unknown because: {r}")
    changed = {k: v for k, v in doc["checkers"].items() if v[0] != v[1]}
    for name, (x, y) in changed.items():
        lines.append(f"  checker {name}: {x} -> {y}")
    if doc["config"]:
        lines.append("config:")
        lines += [f"  {k}: {_s(x)} -> {_s(y)}" for k, (x, y) in doc["config"].items()]
    else:
        lines.append("config: the same (schedule included)")
    if doc["anomalies"]:
        lines.append("anomalies (A -> B):")
        lines += [f"  {k}: {x} -> {y} ({d:+d})" for k, (x, y, d) in doc["anomalies"].items()]
    else:
        lines.append("anomalies: none in either run")
    lines.append("perf (A -> B):")
    for k, (x, y, rel) in doc["perf"].items():
        change = f" ({rel:+.1%})" if rel is not None else ""
        lines.append(f"  {k}: {_s(x)} -> {_s(y)}{change}")
    return "\n".join(lines)


def _s(v: Any) -> str:
    return "-" if v is None else str(v)


__all__ = ["compare_runs", "format_comparison"]
