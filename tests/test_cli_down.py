"""`chaos down` removes only tests whose controller is gone (unless --all / --test).

Owner labels (chaos.runtime.owner) are checked against real processes; the docker test runs
two real controllers, keeps one alive and SIGKILLs the other, then runs a plain `chaos down`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from chaos.runtime import owner
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_labels_of_this_process_say_alive():
    state, why = owner.owner_state(owner.controller_labels())
    assert state == "alive", why


@pytest.mark.integration
def test_an_exited_controller_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a controller
    try:
        labels = {**owner.controller_labels(), owner.PID: str(proc.pid),
                  owner.START: owner.process_start(proc.pid) or ""}
        assert owner.owner_state(labels)[0] == "alive"
    finally:
        proc.kill()
        proc.wait()
    state, why = owner.owner_state(labels)
    assert state == "gone" and str(proc.pid) in why


def test_a_reused_pid_is_gone_and_unknowns_are_kept():
    mine = owner.controller_labels()
    assert owner.owner_state({**mine, owner.START: "1"})[0] == "gone"  # same pid, other process
    assert owner.owner_state({**mine, owner.BOOT: "another-boot"})[0] == "gone"
    assert owner.owner_state({**mine, owner.HOST: socket.gethostname() + "-x"})[0] == "unknown"
    assert owner.owner_state({})[0] == "unknown"  # made before the labels existed


_CONTROLLER = """
import time
from chaos.runtime.docker import DockerRuntime
rt = DockerRuntime(image={image!r})
rt.setup(["n1"], {store!r})
print(rt.test_id, flush=True)
time.sleep(600)
"""


def _left(test_id: str) -> list:
    from chaos.control.engine import docker_client

    return docker_client().containers.list(all=True, filters={"label": f"chaos.test={test_id}"})


@pytest.mark.docker
def test_plain_down_keeps_a_live_controllers_run_and_removes_a_dead_ones(tmp_path):
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image

    image = ensure_node_image(docker_client(), "kvlite")
    procs = {}
    ids = {}
    try:
        for name in ("alive", "dead"):
            code = textwrap.dedent(_CONTROLLER.format(image=image, store=str(tmp_path / name)))
            procs[name] = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=ENV,
                                           stdout=subprocess.PIPE, text=True)
        for name, proc in procs.items():
            ids[name] = (proc.stdout.readline() if proc.stdout else "").strip()
            assert ids[name], f"the {name} controller did not finish setup"
            assert len(_left(ids[name])) == 1
        procs["dead"].send_signal(signal.SIGKILL)
        procs["dead"].wait()
        down = subprocess.run([sys.executable, "-m", "chaos", "down"], cwd=REPO, env=ENV,
                              capture_output=True, text=True, timeout=180)
        assert down.returncode == 0, down.stderr
        assert _left(ids["dead"]) == [], down.stdout
        assert len(_left(ids["alive"])) == 1, down.stdout
        assert f"kept test {ids['alive']}: controller pid {procs['alive'].pid}" in down.stdout
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for test_id in ids.values():
            if test_id:
                subprocess.run([sys.executable, "-m", "chaos", "down", "--test", test_id],
                               cwd=REPO, env=ENV, capture_output=True, timeout=180)
    assert all(_left(t) == [] for t in ids.values() if t)
