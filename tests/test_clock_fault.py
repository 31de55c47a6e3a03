"""The clock fault on real kvlite nodes: applied, read back and healed on the local and
docker runtimes; unverified when the preload is missing; nothing left after the controller
is SIGKILLed (local: the nodes die with it; docker: `chaos down`)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.faults import get
from chaos.nemesis import Nemesis, NemesisContext
from chaos.runtime.local import LocalRuntime
from chaos.target import Service
from tests.conftest import wait_for
from tests.runhelp import REPO, run_json

pytestmark = pytest.mark.integration
SAFE = ["--workload", "register", "-O", "replication=quorum", "-O", "failover=majority"]


def _nemesis_ops(history: str) -> list[dict]:
    lines = (json.loads(line) for line in Path(history).read_text().splitlines())
    return [op for op in lines if op.get("process") == "nemesis" and op["type"] != "invoke"]


def _clock_run(tmp_path: Path, clock: str, *runtime: str) -> list[dict]:
    code, doc = run_json("--store", str(tmp_path), "--seed", "1", *SAFE, "--nemesis", "clock",
                         "--clock", clock, "--nemesis-interval", "1.5", "--time-limit", "3",
                         *runtime, timeout=400)
    assert code == 0, doc
    assert not doc["unverified_faults"]
    ops = _nemesis_ops(doc["history"])
    assert [op["f"] for op in ops] == ["start-clock", "stop-clock", "heal"]
    assert all(op["type"] == "ok" and op["value"]["verified"] for op in ops)
    node = ops[0]["value"]["node"]
    assert ops[1]["value"]["reset"] == [node]
    back = ops[1]["value"]["read_back"][node]
    assert abs(back["offset_s"]) < 0.15 and abs(back["wall_rate"] - 1) < 0.05
    # the node's OWN clock (kvlite's status `time`) is real again, rate included: a fresh
    # probe alone missed a rate libfaketime kept after "+0" (docs/faults.md)
    own = ops[1]["value"]["node_clock"][node]
    assert abs(own["offset_s"]) < 0.15 + own["rtt_s"] and abs(own["rate"] - 1) < 0.1
    assert "node_clock" in ops[0]["value"]
    return ops


@pytest.mark.parametrize("clock,offset,rate", [("offset:3", 3.0, 1.0),
                                               ("rate:0.5", None, 0.5)])
def test_clock_fault_is_read_back_and_healed_locally(tmp_path, clock, offset, rate):
    start = _clock_run(tmp_path, clock)[0]["value"]
    seen = start["read_back"]
    assert start["processes"] == 1  # kvlite: one process per node, libfaketime mapped in it
    assert abs(seen["wall_rate"] - rate) < 0.05 and abs(seen["mono_rate"] - rate) < 0.05
    if offset is None:  # rate: the offset that keeps the node's clock continuous
        offset = start["age_s"] * (1 - rate)
    # the probe's own clock bent from its own start (its age_s)
    assert abs(seen["offset_s"] - offset - (rate - 1) * seen["age_s"]) < 0.2
    assert abs(start["node_clock"]["rate"] - rate) < 0.1  # the node's own clock, read back
    # libfaketime derives the faked CLOCK_MONOTONIC from the faked realtime (docs/faults.md)
    assert abs(seen["mono_minus_wall_s"]) < 0.05


@pytest.mark.docker
def test_clock_fault_is_read_back_and_healed_in_containers(tmp_path):
    start = _clock_run(tmp_path, "bump:-20", "--runtime", "docker")[0]["value"]
    assert abs(start["read_back"]["offset_s"] + 20) < 0.15


def test_a_node_without_the_preload_leaves_the_clock_fault_unverified(tmp_path):
    rt = LocalRuntime()
    rt.setup(["n1"], str(tmp_path))
    ops: list[dict] = []
    nem = Nemesis(NemesisContext(runtime=rt, net=None, nodes=["n1"], leader=lambda: "n1",
                                 restart=lambda *a, **k: None, rng=random.Random(1),
                                 record=ops.append))
    try:
        rt.start("n1", Service("main", ["sleep", "60"], ready_port=None))  # no LD_PRELOAD
        did, problems = get("clock").start(nem, {"node": "n1", "mode": "offset",
                                                 "offset_s": 2.0})
        assert any("no process of n1 runs under the clock control file" in p
                   for p in problems), problems
        assert did["read_back"]["offset_s"] == pytest.approx(2.0, abs=0.15)  # the file works
        healed, problems = get("clock").heal(nem)
        assert healed["clock"]["reset"] == ["n1"] and problems == []
        assert (tmp_path / "nodes" / "n1" / ".chaos-clock").read_text() == "+0.000000 x1\n"
    finally:
        rt.teardown()


def _under_clock(store: Path) -> list[int]:
    """Pids of processes whose environment names a clock control file under `store`."""
    want = f"FAKETIME_TIMESTAMP_FILE={store}".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(v.startswith(want) for v in Path(f"/proc/{pid}/environ").read_bytes()
                   .split(b"\0")):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def _skewed_then_signal(store: Path, *runtime: str, sig: int = signal.SIGKILL,
                        interval: str = "1") -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", *SAFE, "--nemesis", "clock", "--clock",
         "bump:-30", "--nemesis-interval", interval, "--time-limit", "120", "--seed", "2",
         "--store", str(store), "--quiet", *runtime],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def skewed() -> bool:
        return any('"start-clock"' in line and '"ok"' in line
                   for h in store.glob("*/*/history.jsonl") for line in h.open())
    try:
        wait_for(skewed, timeout=300, what="a verified clock fault")
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=120)
    return proc.pid


def test_sigkill_of_the_controller_leaves_no_skewed_node_locally(tmp_path):
    store = (tmp_path / "store").resolve()
    _skewed_then_signal(store)
    wait_for(lambda: _under_clock(store) == [], timeout=10, what="skewed nodes gone")


@pytest.mark.docker
def test_sigkill_of_the_controller_then_down_leaves_no_container(tmp_path):
    from chaos.control.engine import docker_client
    from chaos.runtime.owner import PID

    pid = _skewed_then_signal(tmp_path / "store", "--runtime", "docker")
    client = docker_client()
    mine = {"label": f"{PID}={pid}"}
    assert client.containers.list(all=True, filters=mine)  # left behind by the SIGKILL
    down = subprocess.run([sys.executable, "-m", "chaos", "down"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert down.returncode == 0, down.stderr
    assert client.containers.list(all=True, filters=mine) == []
    assert client.networks.list(filters=mine) == []


def test_ctrl_c_during_a_clock_fault_heals_it_and_records_the_heal(tmp_path):
    store = (tmp_path / "store").resolve()
    _skewed_then_signal(store, sig=signal.SIGINT, interval="4")  # inside the fault window
    history = next(store.glob("*/*/history.jsonl"))
    heal = [op for op in _nemesis_ops(str(history)) if op["f"] == "heal"]
    assert heal and heal[-1]["type"] == "ok", heal
    assert heal[-1]["value"]["clock"]["reset"]  # the skewed node was reset, and read back
    controls = list(history.parent.glob("nodes/*/.chaos-clock"))
    assert controls and all(c.read_text() == "+0.000000 x1\n" for c in controls)
    assert _under_clock(store) == []
