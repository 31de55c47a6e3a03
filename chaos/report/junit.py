"""JUnit XML for CI: one testsuite per run (or history), one testcase per checker plus "run".

Mapping (CI must never read "unknown" as passing):
    valid     -> a passing testcase
    invalid   -> <failure type="invalid">, message = anomaly count + the first messages
    unknown   -> <error type="unknown">, message = why (the checker's error, warnings, or
                 "undecided"). An error, not <skipped>: most CI systems (Jenkins, GitLab,
                 GitHub test reporters) count skipped tests as not failing, and an undecided
                 checker proves nothing, so it must turn the build red like a crash would.
The "run" testcase carries the whole run's verdict (a run can be unknown with every checker
valid: an unverified fault), so each run is one countable test that passes only when valid.
Warnings (severity "warning" anomalies and result warnings) go to <system-out>.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping, Sequence

from chaos.history.summary import NO_VERDICT, unknown_reasons
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


def _run_case(suite: str, res: dict[str, Any], why_unknown: list[str]) -> ET.Element:
    """The "run" testcase: the whole run's verdict, so every run counts once in CI.

    It passes only when the run is valid. A run can be unknown with every checker valid (a
    fault that could not be verified, final reads that failed) and a run with no checker
    proves nothing; both are errors. An invalid run fails, naming its failing checkers.
    """
    case = ET.Element("testcase", {"classname": suite, "name": "run", "time": "0"})
    verdict = verdict_word(res["valid"])
    if verdict == "valid":
        return case
    if verdict == "invalid":
        bad = [n for n, r in res["results"].items() if r["valid"] is False]
        why = [f"{', '.join(bad)} found anomalies"] if bad else []
        why += res["notes"]
    else:
        # the reasons first (unknown_reasons' order), then the run's other notes
        why = list(dict.fromkeys([*why_unknown, *res["notes"]]))
        if len(why) > 1 and why[0] == NO_VERDICT:
            why.pop(0)
        if not res["results"]:
            why = [w for w in why if w != NO_VERDICT] or ["no checker ran"]
    text = "; ".join(why) or "the run's verdict is worse than its checkers'"
    tag = "failure" if verdict == "invalid" else "error"
    ET.SubElement(case, tag, {"type": verdict, "message": f"run verdict {verdict}: {text}"}
                  ).text = "\n".join(why) or text
    return case


def _suite(name: str, results: Mapping[str, Any]) -> ET.Element:
    """One <testsuite>: a testcase per checker, then the "run" testcase."""

    res = normalize_results(results)
    cases = [_testcase(name, checker, r) for checker, r in res["results"].items()]
    cases.append(_run_case(name, res, unknown_reasons(results)))
    failures = sum(c.find("failure") is not None for c in cases)
    errors = sum(c.find("error") is not None for c in cases)
    suite = ET.Element("testsuite", {"name": name, "tests": str(len(cases)),
                                     "failures": str(failures), "errors": str(errors),
                                     "skipped": "0", "time": "0"})
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "verdict", "value": verdict_word(res["valid"])})
    for key in ("run_dir", "path"):
        if isinstance(results.get(key), str):
            ET.SubElement(props, "property", {"name": key, "value": results[key]})
    suite.extend(cases)
    return suite


def junit_tree(results: Mapping[str, Any] | None = None, *, suite_name: str = "chaos",
               suites: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> ET.ElementTree:
    """The JUnit document: <testsuites> with one <testsuite> per run or history checked.

    `results` + `suite_name` is one suite; `suites` is [(name, results), ...] for several
    (`chaos analyze A B --junit`). Each suite has a testcase per checker and one "run".
    """
    items = list(suites) + ([(suite_name, results)] if results is not None else [])
    built = [_suite(name, res) for name, res in items]
    totals = {k: str(sum(int(s.get(k) or 0) for s in built))
              for k in ("tests", "failures", "errors")}
    root = ET.Element("testsuites", {"name": suite_name if len(built) == 1 else "chaos",
                                     **totals, "time": "0"})
    root.extend(built)
    ET.indent(root)
    return ET.ElementTree(root)


def suite_name(path: str | os.PathLike[str], config: Mapping[str, Any] | None = None) -> str:
    """A run's or history's name in JUnit: config's test_name, else the store's test
    directory, else the directory's or file's name.

    Runs live in store/<test-name>/<timestamp>/, so a timestamp-named run directory (or the
    `latest` link to one) is named after its parent.
    """
    for d in (config or {}, (config or {}).get("config") or {}):
        if isinstance(d, Mapping):
            for key in ("test_name", "name"):
                if isinstance(d.get(key), str) and d[key]:
                    return str(d[key])
    p = Path(path)
    if p.name == "history.jsonl":  # a run directory's history: named as the run
        p = p.parent
    if not p.is_dir():
        return p.name
    resolved = p.resolve()
    if resolved.name[:8].isdigit() and resolved.parent.name:
        return resolved.parent.name
    return resolved.name


def write_junit(results: Mapping[str, Any] | None, path: str | os.PathLike[str], *,
                suite_name: str = "chaos",
                suites: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> Path:
    """Write JUnit XML (see junit_tree) to `path`, atomically: a CI step that reads it never
    sees half a file. The one JUnit writer of `chaos run`, `analyze` and `report`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    junit_tree(results, suite_name=suite_name, suites=suites).write(
        tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, out)
    return out
