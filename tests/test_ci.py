"""CI outputs: --junit on analyze (and report), the results JSON Schema, `chaos ci init` and
`chaos ci summary`. The tests that run the generated workflows' commands for real (on kvlite)
are in tests/test_ci_workflow.py."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

from chaos.api import RESULTS_SCHEMA
from chaos.cli.analyze import analyze_one
from chaos.errors import ChaosError
from chaos.store import dumps_json
from tests.runhelp import assert_results_schema as assert_schema_valid
from tests.runhelp import invoke_cli

REPO = Path(__file__).resolve().parent.parent
HISTORIES = REPO / "histories"
LOST = HISTORIES / "lost-write-after-failover.jsonl"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(RESULTS_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --- JUnit from analyze ------------------------------------------------------------------

def test_analyze_junit_names_the_lost_element(tmp_path):
    code, _, err = invoke_cli("analyze", "--no-results", str(LOST), "--junit",
                              str(tmp_path / "out" / "junit.xml"))
    assert code == 1, err
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    (suite,) = root.findall("testsuite")
    fail = suite.find("testcase[@name='lost-writes']/failure")
    assert fail is not None and fail.get("type") == "invalid"
    assert "element 3 was acknowledged by n1" in fail.get("message")
    run = suite.find("testcase[@name='run']/failure")
    assert run is not None and "lost-writes" in run.get("message")
    assert suite.find("testcase[@name='dual-leaders']/failure") is None  # it passed


def test_analyze_junit_unknown_and_bad_input_are_errors_never_passes(tmp_path):
    out = tmp_path / "j.xml"
    code, _, _ = invoke_cli("analyze", "--no-results", str(HISTORIES / "valid-set.jsonl"),
                            str(HISTORIES / "all-info-register.jsonl"),
                            str(HISTORIES / "bad" / "empty.jsonl"), "--junit", str(out))
    assert code == 4  # the worst over the paths
    suites = {s.get("name"): s for s in ET.parse(out).getroot().findall("testsuite")}
    assert set(suites) == {"valid-set.jsonl", "all-info-register.jsonl", "empty.jsonl"}
    assert suites["valid-set.jsonl"].get("failures") == "0"
    assert suites["valid-set.jsonl"].get("errors") == "0"
    unknown = suites["all-info-register.jsonl"].find("testcase[@name='run']/error")
    assert unknown is not None and "0 client operation(s) came back ok" in unknown.get("message")
    bad = suites["empty.jsonl"].find("testcase[@name='run']/error")
    assert bad is not None and "empty" in bad.get("message")


def test_analyze_junit_unwritable_is_refused_before_the_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out, err = invoke_cli("analyze", str(LOST), "--junit",
                                str(tmp_path / "afile" / "j.xml"))
    assert code == 4 and "--junit" in err and "not a directory" in err
    assert not (LOST.parent / "results.json").exists() and out == ""


# --- the results JSON Schema -------------------------------------------------------------

def _analysed(path: Path) -> dict | None:
    try:
        doc, _, _ = analyze_one(str(path), "auto", None, {})
    except ChaosError:
        return None
    return json.loads(dumps_json(doc))  # as results.json holds it


@pytest.mark.parametrize("name", sorted(str(p.relative_to(HISTORIES))
                                        for p in HISTORIES.rglob("*.*")
                                        if p.suffix != ".md" and "bad" not in p.parts))
def test_every_example_history_gives_a_schema_valid_document(name):
    doc = _analysed(HISTORIES / name)
    assert doc is not None
    assert_schema_valid(doc)


@pytest.mark.parametrize("breakage,where", [
    (lambda d: d.pop("results"), "results"),
    (lambda d: d.update(schema="chaos.results/0"), "schema"),
    (lambda d: d.update(valid="maybe"), "valid"),
    # the worst bug: "valid" over a checker that could not decide
    (lambda d: (d.update(valid=True, exit_code=0, reasons=[]),
                d["results"]["lost-writes"].update(valid="unknown")), "valid"),
    (lambda d: d.update(valid=True, exit_code=0), "anomalies"),  # invalid checker remains
    (lambda d: d.update(exit_code=0), "exit_code"),  # invalid, exit 0
    (lambda d: d["results"]["lost-writes"]["anomalies"][0].pop("message"), "message"),
    (lambda d: d["results"]["lost-writes"].update(anomalies=[]), "anomalies"),
])
def test_the_schema_rejects_a_broken_document(breakage, where):
    doc = _analysed(LOST)
    assert doc is not None
    assert_schema_valid(doc)
    breakage(doc)
    errors = list(validator().iter_errors(doc))
    assert errors, f"broken document accepted ({where})"


def test_valid_needs_evidence_in_the_schema():
    """An unknown document claiming valid with no checker is rejected; the real one passes."""
    doc = _analysed(HISTORIES / "valid-set.jsonl")
    assert doc is not None and doc["valid"] is True
    assert_schema_valid(doc)
    assert list(validator().iter_errors({**doc, "results": {}}))
    assert list(validator().iter_errors({**doc, "unverified_faults": ["partition n1"]}))


# --- chaos ci init -----------------------------------------------------------------------

def _init(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    return invoke_cli("ci", "init", "--output", str(tmp_path), *args)


def test_github_workflow_is_valid_yaml_with_every_part(tmp_path):
    code, out, err = _init(tmp_path, "--target", "kvlite", "--target", "redis",
                           "--nemesis", "partition", "--nemesis", "kill,pause", "--seeds", "2")
    assert code == 0, err
    path = tmp_path / ".github" / "workflows" / "chaos-nightly.yml"
    assert str(path) in out
    text = path.read_text()
    doc = yaml.safe_load(text)
    on = doc.get("on", doc.get(True))  # PyYAML reads the key `on` as True (YAML 1.1)
    assert on["schedule"][0]["cron"] == "17 3 * * *" and "workflow_dispatch" in on
    job = doc["jobs"]["chaos"]
    matrix = job["strategy"]["matrix"]
    assert matrix["target"] == ["kvlite", "redis"]
    assert matrix["nemesis"] == ["partition", "kill,pause"] and matrix["seed"] == [1, 2]
    assert {"target": "redis", "runtime": "docker"} in matrix["include"]
    assert {"target": "kvlite", "runtime": "local"} in matrix["include"]
    assert job["strategy"]["fail-fast"] is False
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("actions/cache@") for u in uses)
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any("junit" in u for u in uses)
    runs = {s.get("name"): s.get("run", "") for s in job["steps"]}
    assert "--junit" in runs["Run chaos"] and "--store store" in runs["Run chaos"]
    assert "GITHUB_STEP_SUMMARY" in runs["Verdict summary"]
    assert "chaos image build" in runs["Build Docker node images (cached between runs)"]
    policy = runs["Exit-code policy"]
    assert "1)" in policy and "2)" in policy and "3)" in policy
    for line in ("1 anomalies       the cell FAILS", "2 unknown         flagged",
                 "3 infrastructure  the cell fails as an infrastructure failure"):
        assert line in text  # the policy spelled out for a reader of the file


def test_gitlab_pipeline_is_valid_yaml_with_every_part(tmp_path):
    code, _, err = _init(tmp_path, "--provider", "gitlab", "--target", "kvlite",
                         "--target", "etcd", "--seeds", "1")
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
    job = doc["chaos-nightly"]
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in job["rules"]
    matrix = job["parallel"]["matrix"]
    assert [(m["TARGET"], m["RUNTIME"]) for m in matrix] == [(["kvlite"], ["local"]),
                                                              (["etcd"], ["docker"])]
    assert all(m["NEMESIS"] == ["partition", "kill"] and m["SEED"] == ["1"] for m in matrix)
    assert job["allow_failure"] == {"exit_codes": [2]}  # unknown: flagged, not failed
    assert job["artifacts"]["reports"]["junit"] == "junit/*.xml"
    assert "store/" in job["artifacts"]["paths"] and job["artifacts"]["when"] == "always"
    assert any(".chaos-images" in c["paths"] for c in job["cache"])


def test_init_refuses_to_overwrite_without_force(tmp_path):
    assert _init(tmp_path)[0] == 0
    path = tmp_path / ".github" / "workflows" / "chaos-nightly.yml"
    path.write_text("# mine\n")
    code, _, err = _init(tmp_path)
    assert code == 4 and str(path) in err and "--force" in err
    assert path.read_text() == "# mine\n"
    assert _init(tmp_path, "--force")[0] == 0 and "chaos run" in path.read_text()


@pytest.mark.parametrize("args,needle", [
    (["--provider", "jenkins"], "--provider"),
    (["--target", "nosuch"], "nosuch"),
    (["--nemesis", "flood"], "flood"),
    (["--seeds", "0"], "--seeds"),
    (["--time-limit", "-1"], "--time-limit"),
    (["--run-args", "--bogus 3"], "--bogus"),
    (["--run-args", "--seed 3"], "--seed"),
    (["--run-args", '-O "x'], "--run-args"),
    (["--cron", "daily"], "--cron"),
])
def test_init_bad_arguments_exit_4_and_write_nothing(tmp_path, args, needle):
    code, _, err = _init(tmp_path, *args)
    assert code == 4 and needle in err, err
    assert not any(tmp_path.iterdir())


# --- chaos ci summary --------------------------------------------------------------------

def test_summary_table_worst_first_and_unfinished_runs(tmp_path):
    store = tmp_path / "store"
    for name, src in (("lost", LOST), ("ok", HISTORIES / "valid-set.jsonl"),
                      ("undecided", HISTORIES / "all-info-register.jsonl")):
        d = store / f"t-{name}" / "20261206T010203"
        d.mkdir(parents=True)
        shutil.copy(src, d / "history.jsonl")
        assert invoke_cli("analyze", str(d))[0] in (0, 1, 2)
    crashed = store / "t-crashed" / "20261206T010203"
    crashed.mkdir(parents=True)
    (crashed / "config.json").write_text(json.dumps({"config": {"seed": 9}}))
    (store / "latest").symlink_to("t-lost/20261206T010203")  # not counted twice
    code, out, err = invoke_cli("ci", "summary", str(store))
    assert code == 0, err
    assert "4 runs (1 invalid, 1 not finished, 1 unknown, 1 valid)" in out
    rows = [line for line in out.splitlines() if line.startswith("| t-")]
    assert [r.split("|")[1].strip() for r in rows] == ["t-lost", "t-crashed", "t-undecided",
                                                        "t-ok"]
    assert "1 lost-write" in rows[0] and "element 3" in rows[0]
    assert "did not reach a verdict" in rows[1] and "| 9 |" in rows[1]
    assert "0 client operation(s) came back ok" in rows[2]
    assert invoke_cli("ci", "summary", str(tmp_path / "nope"))[0] == 4


@pytest.mark.integration  # a fresh interpreter, to see what an import pulls in
def test_summary_and_junit_do_not_import_matplotlib():
    """`chaos ci summary` and the JUnit writer run once per CI cell: they must not pay for
    matplotlib (imported only when a plot is drawn, chaos.report.plots._mpl)."""
    import subprocess
    import sys

    code = ("import sys, chaos.ci.summary, chaos.report.junit, chaos.report.sample\n"
            "from chaos.cli import main\n"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
