"""The workflows `chaos ci init` writes, executed step by step on this machine (on kvlite).

The provider's own actions (checkout, setup-python, cache, upload-artifact, the JUnit
publisher) obviously cannot run here and are skipped; so is the "Install chaos" step (it
would pip-install chaos from PyPI: here the chaos under test is on PATH). Every other step's
shell script runs as the provider would run it (bash -e, the matrix and env filled in, the
GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files), and the results are checked: results.json
against the JSON Schema, the JUnit file, the summary, and the exit-code policy's outcome.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.runhelp import assert_results_schema as assert_schema_valid
from tests.runhelp import invoke_cli

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent  # the chaos under test (its `chaos` script)
#: short cells: a few seconds of load, faults every 1.5 s, kvlite's failure detection fast
SHORT = "--nemesis-interval 1.5 --quiesce 1"
SAFE = f"{SHORT} -O replication=quorum -O failover=majority"
UNSAFE = (f"{SHORT} --workload set -O replication=async -O failover=naive "
          "-O election_timeout_ms=400 -O heartbeat_ms=50")


def _shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)


def _github_expr(text: str, ctx: dict[str, dict[str, str]]) -> str:
    """${{ matrix.x }} / ${{ env.X }} / ${{ steps.run.outputs.code }} filled in."""
    def sub(m: re.Match) -> str:
        path = m.group(1).strip().split(".")
        if path[0] == "steps":
            return ctx["outputs"].get(path[-1], "")
        return str(ctx[path[0]][path[1]])
    return re.sub(r"\$\{\{([^}]*)\}\}", sub, text)


def _github_if(cond: str | None, matrix: dict[str, str]) -> bool:
    if cond is None:
        return True
    if cond == "always()":
        return True
    m = re.fullmatch(r"matrix\.(\w+) (==|!=) '([^']*)'", cond)
    assert m, f"the test does not know the condition {cond!r}: teach it"
    return (matrix[m.group(1)] == m.group(3)) == (m.group(2) == "==")


def test_github_workflow_commands_run_here(tmp_path):
    code, _, err = invoke_cli("ci", "init", "--output", str(tmp_path), "--target", "kvlite",
                              "--nemesis", "partition", "--seeds", "1", "--time-limit", "5",
                              "--run-args", SAFE)
    assert code == 0, err
    doc = yaml.safe_load((tmp_path / ".github/workflows/chaos-nightly.yml").read_text())
    job = doc["jobs"]["chaos"]
    matrix = {"target": "kvlite", "nemesis": "partition", "seed": "1", "runtime": "local"}
    ctx: dict[str, dict[str, str]] = {"matrix": matrix, "outputs": {}, "env": {}}
    ctx["env"] = {k: _github_expr(str(v), ctx) for k, v in job["env"].items()}
    output, summary = tmp_path / "gh_output", tmp_path / "gh_summary.md"
    ran, policy = [], None
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Install chaos":
            continue
        if not _github_if(step.get("if"), matrix):
            continue
        env = {**ctx["env"], **{k: _github_expr(str(v), ctx)
                                for k, v in (step.get("env") or {}).items()},
               "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
        proc = _shell(_github_expr(step["run"], ctx), tmp_path, env)
        ran.append(step["name"])
        if step["name"] == "Exit-code policy":
            policy = proc
        else:
            assert proc.returncode == 0, (step["name"], proc.stdout, proc.stderr)
        if output.exists():
            ctx["outputs"] = dict(line.split("=", 1) for line in output.read_text().split())
    assert ran == ["Run chaos", "Verdict summary", "Exit-code policy"]  # docker steps: skipped
    assert ctx["outputs"]["code"] == "0"
    assert policy is not None and policy.returncode == 0 and "valid" in policy.stdout
    (results,) = (tmp_path / "store").glob("*/2*/results.json")
    assert_schema_valid(json.loads(results.read_text()))
    suite = ET.parse(tmp_path / "junit" / "kvlite-partition-1.xml").getroot()[0]
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    assert suite.find("testcase[@name='run']") is not None
    text = summary.read_text()
    assert "1 run (1 valid)" in text and "✅ valid" in text


def test_gitlab_pipeline_commands_run_here_and_fail_on_anomalies(tmp_path):
    code, _, err = invoke_cli("ci", "init", "--provider", "gitlab", "--output", str(tmp_path),
                              "--target", "kvlite", "--nemesis", "partition", "--seeds", "1",
                              "--time-limit", "5", "--run-args", UNSAFE)
    assert code == 0, err
    job = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())["chaos-nightly"]
    (cell,) = job["parallel"]["matrix"]
    env = {k: str(v) for k, v in job["variables"].items()}
    env.update({k: v[0] for k, v in cell.items()})
    install, *before = job["before_script"]
    assert install.startswith("python -m pip install")  # skipped: chaos is on PATH here
    for script in before + job["script"]:
        proc = _shell(script, tmp_path, env)
        if script is not job["script"][-1]:
            assert proc.returncode == 0, (script, proc.stdout, proc.stderr)
    # the last script is the cell: chaos run, the summary, the policy; anomalies fail it
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "ANOMALIES found" in proc.stdout
    assert 1 not in job["allow_failure"]["exit_codes"]
    summary = (tmp_path / "summary.md").read_text()
    assert "❌ invalid" in summary and "lost-write" in summary
    fail = ET.parse(tmp_path / "junit" / "kvlite-partition-1.xml").getroot().find(
        "testsuite/testcase[@name='lost-writes']/failure")
    assert fail is not None and re.search(r"element \d+ was acknowledged", fail.get("message"))
    (results,) = (tmp_path / "store").glob("*/2*/results.json")
    assert_schema_valid(json.loads(results.read_text()))
