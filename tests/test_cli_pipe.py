"""A closed stdout (`chaos run ... | head -2`) never changes a command's exit code.

Real processes: the reader end of the pipe is closed before the command writes, so every
write to stdout meets EPIPE (the `| head -0` case, deterministic), and once through a shell
`| head -2` as users write it. Click's own handling would exit 1 ("anomalies") here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.runhelp import REPO

pytestmark = pytest.mark.integration

ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
QUICK_RUN = ["run", "--nemesis", "none", "--time-limit", "1.5", "--quiesce", "0.2",
             "--rate", "50", "--concurrency", "2", "--seed", "1"]


def _closed_stdout(*args: str, timeout: float = 180) -> tuple[int, str]:
    """Run `python -m chaos ARGS` with stdout a pipe whose reader is already closed."""
    r, w = os.pipe()
    os.close(r)  # nobody will ever read: every write raises EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "chaos", *args], cwd=REPO, env=ENV,
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=timeout)
    finally:
        os.close(w)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("history, code", [("valid-register.jsonl", 0),
                                           ("stale-follower-read.jsonl", 1)])
def test_analyze_keeps_its_verdict_code_on_a_closed_pipe(tmp_path, history, code):
    src = REPO / "histories" / history
    dst = tmp_path / history
    shutil.copy(src, dst)
    rc, err = _closed_stdout("analyze", "--no-results", str(dst))
    assert rc == code, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_run_keeps_exit_0_on_a_closed_pipe(tmp_path):
    rc, err = _closed_stdout(*QUICK_RUN, "--store", str(tmp_path / "s"), "--quiet")
    assert rc == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert list((tmp_path / "s").glob("*/*/results.json"))  # the run really happened


def test_run_piped_into_head_keeps_exit_0_and_says_no_fault(tmp_path):
    """Through a shell as users type it (with a fault asked for that cannot fit: it warns)."""
    store = tmp_path / "s"
    args = " ".join(QUICK_RUN) + " --nemesis kill"
    cmd = (f"{sys.executable} -m chaos {args} --store {store} --quiet 2>{tmp_path}/err "
           f"| head -2; echo \"rc=${{PIPESTATUS[0]}}\"")
    out = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=180).stdout
    err = (tmp_path / "err").read_text()
    assert out.strip().endswith("rc=0"), (out, err)
    assert "Traceback" not in err, err
    assert "warning: no faults will be injected" in err


def test_summary_repeats_the_no_fault_warning(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "chaos", *QUICK_RUN, "--nemesis", "kill",
                           "--store", str(tmp_path / "s"), "--quiet"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "warning: no faults will be injected" in proc.stderr
    assert "warning: no faults will be injected" in proc.stdout
