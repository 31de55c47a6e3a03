"""ruff and mypy as part of the test run, so the README's one test command (what .ci/run calls)
also keeps the code lint-clean and type-checked. Both read their settings from pyproject.toml.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(module: str, *args: str, timeout: float) -> None:
    """Run `python -m module args` in the repository; fail with its output unless it exits 0."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[test]'")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{module} {' '.join(args)} failed (exit {proc.returncode}):\n"
                    f"{proc.stdout}{proc.stderr}", pytrace=False)


def test_ruff_check() -> None:
    _run("ruff", "check", "--no-fix", "--output-format", "concise", ".", timeout=120)


def test_mypy_chaos() -> None:
    # the first run on a fresh clone checks everything (~30 s); later ones reuse .mypy_cache
    _run("mypy", "chaos", timeout=280)


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run's last line is the README's test command, character for character."""
    command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = [line.strip() for line in (REPO / "README.md").read_text().splitlines()]
    assert command.startswith("python3 -m venv .venv && ")
    assert command in readme, f"README.md does not show .ci/run's command: {command}"
