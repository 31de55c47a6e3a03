"""Helpers for end-to-end tests that run `chaos` as a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def chaos(*args: str, timeout: float = 240, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m chaos ARGS` from the repo (no install needed); capture output."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "chaos", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def invoke_cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `chaos ARGS` run in-process (chaos.cli.main, through
    click's CliRunner isolation, so the CLI's own exit-code handling is what is tested)."""
    from click.testing import CliRunner

    from chaos.cli import main

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue().decode(), err.getvalue().decode()


def run_json(*args: str, timeout: float = 240) -> tuple[int, dict]:
    """`chaos run ... --json`: the exit code and the parsed results document."""
    proc = chaos("run", "--json", *args, timeout=timeout)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"no JSON on stdout (exit {proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}") from exc
    assert_results_schema(doc)
    return proc.returncode, doc


def assert_results_schema(doc: dict) -> None:
    """`doc` follows chaos/report/results.schema.json (the published contract of results.json
    and `--json`): every real run a test makes through run_json is checked against it."""
    import jsonschema

    from chaos.api import RESULTS_SCHEMA

    validator = jsonschema.Draft202012Validator(json.loads(RESULTS_SCHEMA.read_text()))
    errors = [f"{list(e.path)}: {e.message[:300]}" for e in validator.iter_errors(doc)]
    assert not errors, f"results document breaks its JSON Schema: {errors[:5]}"


def run_cell(cells: dict, name: str, store: Path, seed: int, *, defaults: tuple = (),
             overrides: tuple = (), timeout: float = 600) -> tuple[int, dict]:
    """One cell of a target's acceptance matrix (targets/<t>/matrix.py CELLS) through
    `chaos run --json`: `defaults` go before the cell's own arguments (the cell wins),
    `overrides` after them (a test's shorter timing wins)."""
    args, _expect = cells[name]
    return run_json("--store", str(store), "--seed", str(seed), *defaults, *args, *overrides,
                    timeout=timeout)


def anomaly_kinds(doc: dict, checker: str) -> set[str]:
    res = (doc.get("results") or {}).get(checker) or {}  # the results document (one shape)
    return {a["kind"] for a in res.get("anomalies", [])
            if a.get("severity", "anomaly") == "anomaly"}


#: The acceptance-matrix cells (DESIGN §6) as chaos run arguments, shared by the local and
#: docker suites so both judge the same configurations the same way.
UNSAFE_SET = ["--workload", "set", "-O", "replication=async", "-O", "failover=naive"]
#: extra options per nemesis for the unsafe cell: a leader killed right after an async batch
#: shipped has lost nothing yet, so kills get a wider replication window (200 ms of acked
#: writes not yet on any follower) to make the loss certain rather than likely
UNSAFE_EXTRA = {"kill": ["-O", "replication_lag_ms=200"], "partition": []}
STALE_REGISTER = ["--workload", "register", "--nemesis", "latency", "-O", "replication=async",
                  "-O", "read_from=any"]
SAFE_REGISTER = ["--workload", "register", "-O", "replication=quorum", "-O", "failover=majority",
                 "-O", "read_from=leader"]


def assert_lost_writes_and_split_brain(code: int, doc: dict) -> None:
    assert code == 1, doc
    assert "lost-write" in anomaly_kinds(doc, "lost-writes")
    assert anomaly_kinds(doc, "dual-leaders") & {"same-term-leaders", "split-brain-writes"}


def assert_stale_reads(code: int, doc: dict) -> None:
    assert code == 1, doc
    assert "stale-read" in anomaly_kinds(doc, "stale-reads")


def assert_valid(code: int, doc: dict) -> None:
    assert code == 0, doc
    assert doc["valid"] is True and not doc["unverified_faults"]
