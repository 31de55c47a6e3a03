"""Spill directories of `chaos analyze` do not outlive their owner: a SIGKILLed analysis
(no cleanup runs) leaves its shards, and the next analysis removes them; a live owner's
directory is never touched."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from chaos.history import spill
from tests.runhelp import REPO

T = TypeVar("T")


def _poll(cond: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"  # a zombie is dead, waiting to be reaped


@pytest.mark.integration
def test_sigkilled_analysis_leaves_shards_the_next_one_sweeps(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    big = tmp_path / "set.jsonl"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_history.py"), "--workload",
                    "set", "--lines", "300000", "--out", str(big)], check=True, timeout=120)
    env = {**os.environ, "TMPDIR": str(tmp),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "analyze", "--no-results",
                             str(big)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        shards = _poll(lambda: [p for p in tmp.glob("chaos-shards-*/*") if p.stat().st_size],
                       60, "the analysis to spill its first shard")
        workers = _children(proc.pid)  # the readers of the other byte ranges, if any
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        _poll(lambda: not any(_alive(w) for w in workers), 10,
              f"the analysis's worker processes {workers} to die with it")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = shards[0].parent
    assert left.is_dir(), "the kill should leave the directory (nothing ran on SIGKILL)"
    assert left.name.startswith(f"chaos-shards-{proc.pid}-")
    small = REPO / "histories" / "lost-write-after-failover.jsonl"
    done = subprocess.run([sys.executable, "-m", "chaos", "analyze", "--no-results",
                           str(small)], env=env, capture_output=True, timeout=120)
    assert done.returncode in (0, 1, 2), done.stderr
    assert not left.exists(), "the next analysis should have swept the dead owner's shards"
    assert list(tmp.iterdir()) == [], "and removed its own"


def test_sweep_keeps_live_owners_and_takes_reused_pids(tmp_path: Path) -> None:
    mine = spill.make_directory(tmp_path)
    start = spill._start_time(os.getpid())
    assert start is not None
    reused = tmp_path / f"{spill.PREFIX}{os.getpid()}-{start + 1}-x"  # pid now another's
    reused.mkdir()
    other = tmp_path / "chaos-shards-not-ours"
    other.mkdir()
    removed = spill.sweep(tmp_path)
    assert removed == [reused]
    assert mine.is_dir() and other.is_dir()
