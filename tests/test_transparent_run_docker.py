"""`chaos run --runtime docker --net transparent` end to end with kvlite, and Ctrl-C cleanup."""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runhelp import REPO, SAFE_REGISTER, run_json

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def _ops(history: Path) -> list[dict]:
    return [json.loads(line) for line in history.read_text().splitlines() if line.strip()]


def _write_latencies(ops: list[dict]) -> tuple[list[float], list[float]]:
    """ok write latencies (ms) inside and outside the latency fault's windows."""
    windows, start = [], None
    for op in ops:
        if op["process"] == "nemesis" and op["f"] == "start-latency" and op["type"] == "ok":
            start = op["time"]
        if op["process"] == "nemesis" and op["f"] == "stop-latency" and op["type"] == "invoke":
            windows.append((start, op["time"]))
    pending, inside, outside = {}, [], []
    for op in ops:
        if op["process"] in ("nemesis", "monitor") or op.get("f") != "write":
            continue
        if op["type"] == "invoke":
            pending[op["process"]] = op["time"]
        elif op["type"] == "ok" and op["process"] in pending:
            t0 = pending.pop(op["process"])
            ms = (op["time"] - t0) / 1e6
            if any(a <= t0 and op["time"] <= b for a, b in windows):
                inside.append(ms)
            elif not any(a - 1e9 <= op["time"] <= b + 1e9 for a, b in windows):
                outside.append(ms)
    return inside, outside


def test_kvlite_latency_and_partition_through_the_transparent_mesh(tmp_path):
    code, doc = run_json("--store", str(tmp_path / "store"), "--runtime", "docker",
                         "--net", "transparent", "--nemesis", "latency,partition",
                         "--time-limit", "16", "--nemesis-interval", "4", "--seed", "5",
                         "--latency-ms", "200", "--rate", "40", *SAFE_REGISTER, timeout=600)
    assert doc["unverified_faults"] == [], doc["unverified_faults"]
    assert code in (0, 1), doc
    run_dir = Path(doc["run_dir"])
    ops = _ops(run_dir / "history.jsonl")
    nemesis = [o for o in ops if o["process"] == "nemesis" and o["type"] != "invoke"]
    assert {o["f"] for o in nemesis} >= {"start-latency", "stop-latency", "start-partition",
                                         "stop-partition", "heal"}
    assert all(o["type"] == "ok" and o["value"].get("verified") for o in nemesis), nemesis
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["net"] == "transparent"
    # quorum writes wait for a follower: one node-link round trip = 2 x (200 ± 50) ms
    inside, outside = _write_latencies(ops)
    assert len(inside) >= 5 and len(outside) >= 5, (len(inside), len(outside))
    assert statistics.median(inside) >= 280, sorted(inside)[:10]
    assert statistics.median(outside) < 150, sorted(outside)[-10:]


def _leftovers(test_ids: set[str] | None = None) -> list[str]:
    import docker

    client = docker.from_env()
    found = [c.name for c in client.containers.list(all=True, filters={"label": "chaos.test"})]
    found += [n.name for n in client.networks.list(filters={"label": "chaos.test"})]
    client.close()
    return found


def test_sigint_during_a_transparent_partition_leaves_nothing(tmp_path):
    before = set(_leftovers())  # other helpers' runs may be going on: only ours must vanish
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", "--runtime", "docker", "--net", "transparent",
         "--nemesis", "partition", "--nemesis-interval", "2", "--time-limit", "120", "--seed",
         "3", "--store", str(store), "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        started = False
        while time.monotonic() < deadline and not started:
            if proc.poll() is not None:
                raise AssertionError(f"chaos run ended early: {proc.communicate()[1][-2000:]}")
            for h in store.glob("*/*/history.jsonl"):
                started = started or '"type":"ok","f":"start-partition"' in h.read_text()
            time.sleep(0.2)
        assert started, "the partition never started"
        ours = set(_leftovers()) - before
        assert ours  # the run's containers exist while it runs
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert not (set(_leftovers()) & ours)  # containers (and their nat rules) are gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bypassing_target_on_the_transparent_mesh_is_unknown(tmp_path):
    code, doc = run_json("--store", str(tmp_path / "store"), "--runtime", "docker",
                         "--net", "transparent",
                         "--target", str(REPO / "tests" / "bypass_target.py"),
                         "--nodes", "2", "--nemesis", "partition", "--partition-shape", "halves",
                         "--time-limit", "6", "--nemesis-interval", "2", "--concurrency", "2",
                         "--rate", "20", "--seed", "1", timeout=600)
    problems = doc["unverified_faults"]
    assert code == 2 and doc["valid"] == "unknown", doc
    assert any("around the mesh" in p and "n2" in p and "n1" in p and ":7001" in p
               for p in problems), problems
    assert any("carried no traffic" in p for p in problems), problems
