"""JUnit XML for CI: one testsuite, one testcase per checker.

Mapping (CI must never read "unknown" as passing):
    valid     -> a passing testcase
    invalid   -> <failure type="invalid">, message = anomaly count + the first messages
    unknown   -> <error type="unknown">, message = why (the checker's error, warnings, or
                 "undecided"). An error, not <skipped>: most CI systems (Jenkins, GitLab,
                 GitHub test reporters) count skipped tests as not failing, and an undecided
                 checker proves nothing, so it must turn the build red like a crash would.
Warnings (severity "warning" anomalies and result warnings) go to <system-out>.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping

from chaos.checkers.base import merge_valid
from chaos.report.results import normalize_results, verdict_word

FIRST_MESSAGES = 3
MAX_BODY_ANOMALIES = 200


def _anomaly_line(a: dict[str, Any]) -> str:
    where = []
    if a["key"] is not None:
        where.append(f"key={a['key']}")
    if a["time"] is not None:
        where.append(f"t={a['time'] / 1e9:.3f}s")
    if a["ops"]:
        more = "…" if len(a["ops"]) > 10 else ""
        where.append("ops=" + ",".join(map(str, a["ops"][:10])) + more)
    line = f"[{a['kind']}] {a['message']}" + (f" ({' '.join(where)})" if where else "")
    if a["explanation"]:
        line += "\n    " + str(a["explanation"]).replace("\n", "\n    ")
    return line


def _testcase(suite: str, name: str, r: dict[str, Any]) -> ET.Element:
    case = ET.Element("testcase", {"classname": suite, "name": name, "time": "0"})
    for key in ("elapsed_s", "time_s", "seconds"):
        v = r["stats"].get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            case.set("time", f"{float(v):.3f}")
            break
    anomalies = [a for a in r["anomalies"] if a["severity"] == "anomaly"]
    warnings = [a for a in r["anomalies"] if a["severity"] == "warning"]
    verdict = verdict_word(r["valid"])
    if verdict == "invalid":
        firsts = "; ".join(a["message"] for a in anomalies[:FIRST_MESSAGES])
        n = len(anomalies)
        msg = f"{n} anomal{'y' if n == 1 else 'ies'}" + (f": {firsts}" if firsts else "")
        if n > FIRST_MESSAGES:
            msg += f"; … {n - FIRST_MESSAGES} more"
        el = ET.SubElement(case, "failure", {"type": "invalid", "message": msg})
        body = [_anomaly_line(a) for a in anomalies[:MAX_BODY_ANOMALIES]]
        if n > MAX_BODY_ANOMALIES:
            body.append(f"… {n - MAX_BODY_ANOMALIES} more (see results.json)")
        el.text = "\n".join(body) or "checker said invalid"
    elif verdict == "unknown":
        why = r["error"].splitlines()[0] if r["error"] else (
            "; ".join((r["reasons"] + r["warnings"])[:FIRST_MESSAGES])
            or "the checker could not decide")
        el = ET.SubElement(case, "error", {"type": "unknown", "message": f"undecided: {why}"})
        el.text = r["error"] or "\n".join(r["reasons"] + r["warnings"]) or why
    out = [f"warning: {w}" for w in r["warnings"]] + [_anomaly_line(a) for a in warnings]
    if r["stats"]:
        out.append("stats: " + ", ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}"
            for k, v in r["stats"].items()))
    if out:
        ET.SubElement(case, "system-out").text = "\n".join(out)
    return case


def _run_verdict_case(suite: str, res: dict[str, Any]) -> ET.Element | None:
    """A "run" testcase when the run's verdict is worse than its checkers' (or none ran).

    A run can be unknown with every checker valid (a fault that could not be verified), and
    a run with no checker proves nothing; CI must see both as not passing.
    """
    merged = merge_valid([r["valid"] for r in res["results"].values()]) if res["results"] else None
    verdict = verdict_word(res["valid"])
    if res["results"] and (verdict == verdict_word(merged) or verdict == "valid"):
        return None
    if not res["results"] and verdict == "valid":
        return None
    case = ET.Element("testcase", {"classname": suite, "name": "run", "time": "0"})
    why = "; ".join(res["notes"]) or ("no checker ran" if not res["results"]
                                       else "the run's verdict is worse than its checkers'")
    tag = "failure" if verdict == "invalid" else "error"
    ET.SubElement(case, tag, {"type": verdict, "message": f"run verdict {verdict}: {why}"}
                  ).text = "\n".join(res["notes"]) or why
    return case


def junit_tree(results: Mapping[str, Any], *, suite_name: str) -> ET.ElementTree:
    """The JUnit document: <testsuites><testsuite name=suite_name>…</testsuite></testsuites>."""
    res = normalize_results(results)
    cases = [_testcase(suite_name, name, r) for name, r in res["results"].items()]
    run_case = _run_verdict_case(suite_name, res)
    if run_case is not None:
        cases.append(run_case)
    failures = sum(c.find("failure") is not None for c in cases)
    errors = sum(c.find("error") is not None for c in cases)
    attrs = {"name": suite_name, "tests": str(len(cases)), "failures": str(failures),
             "errors": str(errors), "skipped": "0", "time": "0"}
    root = ET.Element("testsuites", {k: v for k, v in attrs.items() if k != "skipped"})
    suite = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "verdict", "value": verdict_word(res["valid"])})
    suite.extend(cases)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: Mapping[str, Any], path: str | os.PathLike[str], *,
                suite_name: str) -> Path:
    """Write JUnit XML for `results` (run_checkers' output or results.json) to `path`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(results, suite_name=suite_name).write(out, encoding="utf-8", xml_declaration=True)
    return out
