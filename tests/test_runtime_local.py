"""The local runtime with real processes and real signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos.runtime.local import LocalRuntime

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


@pytest.fixture
def rt(tmp_path):
    r = LocalRuntime()
    r.setup(["n1", "n2"], str(tmp_path))
    yield r
    r.teardown()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_start_kill_restart(rt, tmp_path):
    rt.start("n1", SLEEPER)
    pid = rt.pid("n1")
    assert pid and rt.is_running("n1")
    rt.kill("n1")
    assert not rt.is_running("n1") and not _alive(pid)
    rt.start("n1", SLEEPER)
    assert rt.pid("n1") != pid and rt.is_running("n1")
    time.sleep(0.3)
    assert "up" in (tmp_path / "nodes" / "n1" / "node.out").read_text()


def test_pause_resume_really_stops_the_process(rt):
    rt.start("n1", SLEEPER)
    assert not rt.is_paused("n1")
    rt.pause("n1")
    assert rt.is_paused("n1")
    rt.resume("n1")
    time.sleep(0.05)
    state = Path(f"/proc/{rt.pid('n1')}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state in ("S", "R")


def test_start_twice_is_an_error(rt):
    from chaos.errors import SetupError

    rt.start("n1", SLEEPER)
    with pytest.raises(SetupError):
        rt.start("n1", SLEEPER)


def test_missing_program_is_a_setup_error(rt):
    from chaos.errors import SetupError

    with pytest.raises(SetupError, match="cannot start node n1"):
        rt.start("n1", ["/nonexistent/program"])


def test_teardown_kills_paused_nodes(rt):
    rt.start("n1", SLEEPER)
    rt.start("n2", SLEEPER)
    pids = [rt.pid("n1"), rt.pid("n2")]
    rt.pause("n2")
    rt.teardown()
    assert not any(_alive(p) for p in pids)


def test_nodes_die_with_a_sigkilled_controller(tmp_path):
    """Even a controller killed with SIGKILL leaves no node behind (PR_SET_PDEATHSIG)."""
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from chaos.runtime.local import LocalRuntime\n"
        "r = LocalRuntime(); r.setup(['n1'], %r)\n"
        "r.start('n1', [sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(r.pid('n1'), flush=True); time.sleep(60)\n"
    ) % (str(Path(__file__).resolve().parents[1]), str(tmp_path))
    ctl = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        node_pid = int(ctl.stdout.readline())
        assert _alive(node_pid)
        os.kill(ctl.pid, signal.SIGKILL)
        ctl.wait(5)
        deadline = time.monotonic() + 5
        while _alive(node_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(node_pid)
    finally:
        ctl.kill()


def test_node_ports_are_outside_the_ephemeral_range():
    """Proxies and clients bind port 0 while nodes start: node ports must not be in that pool."""
    import socket

    from chaos.runtime.local import _ephemeral_range, node_port

    low, high = _ephemeral_range()
    ports = {node_port() for _ in range(50)}
    assert all(1024 <= p < low for p in ports)
    for p in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # really free
