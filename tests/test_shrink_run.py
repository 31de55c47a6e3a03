"""`chaos shrink` for real: kvlite clusters re-run with smaller fault schedules.

The default suite shrinks a short two-partition run (async + naive failover: every isolation
of the leader loses acknowledged writes) with one try per candidate, and interrupts a shrink
with SIGINT. The issue's full demonstration (six partitions, three tries) is the slow test at
the end and benchmarks/bench_shrink.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.archive.index import Index
from chaos.cli.run import load_replay
from tests.conftest import wait_for
from tests.runhelp import REPO, chaos, invoke_cli
from tests.storegen import make_store

pytestmark = pytest.mark.integration

FAILING = ("--target", "kvlite", "--workload", "set", "-O", "replication=async",
           "-O", "failover=naive", "-O", "election_timeout_ms=500", "--nemesis", "partition",
           "--quiesce", "1", "--quiet")


def _failing_run(store: Path, interval: str, limit: str) -> Path:
    proc = chaos("run", *FAILING, "--nemesis-interval", interval, "--time-limit", limit,
                 "--seed", "3", "--store", str(store))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    return (store / "latest").resolve()


@pytest.fixture(scope="module")
def two_partitions(tmp_path_factory) -> Path:
    return _failing_run(tmp_path_factory.mktemp("shrink"), "1.5", "6")


def test_shrink_keeps_one_partition_that_still_loses_writes(two_partitions, tmp_path):
    out = tmp_path / "out"
    proc = chaos("shrink", str(two_partitions), "--tries", "1", "--budget", "120",
                 "--out", str(out), timeout=400)
    doc = json.loads((out / "shrink.json").read_text())
    assert doc["kind"] == "lost-write" and doc["events"] == [2, 1], proc.stderr
    assert "keep events 1-1 of 2" in proc.stderr   # progress lines, one per step
    # every kept step really reproduced: its run directory's results say so
    kept = [s for s in doc["steps"] if s["reproduced"]]
    assert kept
    for step in kept:
        results = json.loads((Path(step["run_dirs"][-1]) / "results.json").read_text())
        assert results["valid"] is False
        assert results["results"]["lost-writes"]["stats"]["lost"] == step["counts"][-1] > 0
        cfg = json.loads((Path(step["run_dirs"][-1]) / "config.json").read_text())["config"]
        assert len(cfg["schedule"]) == step["events"]
        assert cfg["time_limit"] == max(s["stop_s"] for s in cfg["schedule"]) + 1
    # every re-run is a finished run of its own store: its index line was appended
    idx = Index(out / "runs")
    idx.refresh()
    assert len(idx.runs) == sum(step["tries"] for step in doc["steps"])
    assert all(r.faults == 1 for r in idx.runs.values())   # 2 events: each re-run keeps one
    rate = doc["rate"]
    assert rate["tries"] == 1
    assert proc.returncode == (0 if rate["reproduced"] else 2), proc.stdout + proc.stderr
    assert f"reproduces lost-write in {rate['reproduced']}/1 tries" in proc.stdout
    # the minimal config is what `chaos run --replay OUT` reads
    cfg = load_replay(str(out), str(tmp_path / "replays"))
    assert len(cfg.schedule) == 1 and cfg.schedule[0].kind == "partition"
    assert f"chaos run --replay {out}" in proc.stdout


def test_ctrl_c_keeps_the_best_so_far(two_partitions, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "shrink", str(two_partitions),
                             "--tries", "1", "--out", str(out)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a re-run has started recording: interrupt it mid-run
        wait_for(lambda: list((out / "runs").glob("*/*/history.jsonl")), 120,
                 "the first re-run's history")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    doc = json.loads((out / "shrink.json").read_text())
    assert doc["stopped"].startswith("interrupted") and doc["rate"] is None
    assert doc["events"] == [2, 2]          # nothing reproduced yet: the original schedule
    assert len(load_replay(str(out), str(tmp_path / "r")).schedule) == 2
    assert "search stopped early: interrupted" in stdout


def test_bad_rundir_is_exit_4(tmp_path):
    code, _, err = invoke_cli("shrink", str(tmp_path))
    assert code == 4 and "no config.json" in err
    ids = make_store(tmp_path / "store", 2)   # the second: quorum + majority, valid
    code, _, err = invoke_cli("shrink", str(tmp_path / "store" / ids[1]))
    assert code == 4 and "found no anomaly (valid): nothing to shrink towards" in err
    code, _, err = invoke_cli("shrink", str(tmp_path / "store" / ids[0]), "--tries", "0")
    assert code == 4 and "--tries" in err


@pytest.mark.slow
def test_six_partitions_shrink_to_at_most_two(tmp_path):
    """The issue's demonstration: 6 partitions -> at most 2 events, rate over 3 tries."""
    run = _failing_run(tmp_path / "store", "3", "36")
    assert len(json.loads((run / "config.json").read_text())["config"]["schedule"]) == 6
    proc = chaos("shrink", str(run), "--tries", "3", timeout=1800)
    doc = json.loads((run / "shrink" / "shrink.json").read_text())
    assert len(doc["schedule"]) <= 2 and doc["rate"]["reproduced"] >= 1, proc.stderr
    assert proc.returncode == 0
