"""The local runtime with real processes and real signals: services, process groups, ports."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos.errors import SetupError
from chaos.runtime.base import Runtime
from chaos.runtime.local import LocalRuntime
from chaos.target import MAIN, Service

pytestmark = pytest.mark.integration

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
#: a service that forks a child into its own process group and prints the child's pid
FORKER = [sys.executable, "-c",
          "import subprocess, sys, time\n"
          "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
          "print(c.pid, flush=True); time.sleep(60)"]
#: a TCP server on the port given as argv[1] (ready when it accepts)
SERVER = [sys.executable, "-c",
          "import socket, sys, time\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)"]


def svc(name: str, argv: list[str], **kw) -> Service:
    kw.setdefault("ready_port", None)
    return Service(name, argv, **kw)


@pytest.fixture
def rt(tmp_path):
    r = LocalRuntime()
    r.setup(["n1", "n2"], str(tmp_path))
    yield r
    r.teardown()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "-"


def _alive(pid: int) -> bool:
    return _state(pid) not in ("-", "Z", "X")


def _poll(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _child_pid(path: Path) -> int:
    return int(_poll(lambda: path.exists() and path.read_text().strip(), what="child pid"))


def test_is_a_runtime():
    assert isinstance(LocalRuntime(), Runtime)


def test_start_kill_restart(rt, tmp_path):
    rt.start("n1", svc(MAIN, SLEEPER))
    pid = rt.pid("n1")
    assert pid and rt.is_running("n1") and rt.is_running("n1", MAIN)
    out = tmp_path / "nodes" / "n1" / "main.out"
    _poll(lambda: "up" in out.read_text(), what="the first start's output")
    rt.kill("n1")
    assert not rt.is_running("n1") and not _alive(pid)
    rt.start("n1", svc(MAIN, SLEEPER))
    assert rt.pid("n1") != pid and rt.is_running("n1")
    _poll(lambda: out.read_text().count("up") == 2, what="two starts in main.out")


def test_kill_reaches_every_child_of_every_service(rt, tmp_path):
    d = tmp_path / "nodes" / "n1"
    rt.start("n1", svc("a", FORKER))
    rt.start("n1", svc("b", FORKER))
    children = [_child_pid(d / "a.out"), _child_pid(d / "b.out")]
    leaders = [rt.pid("n1", "a"), rt.pid("n1", "b")]
    assert all(_alive(p) for p in children + leaders)
    rt.pause("n1")
    assert rt.is_paused("n1") and rt.is_paused("n1", "b")
    assert all(_state(p) in ("T", "t") for p in children)   # the children froze too
    rt.resume("n1")
    _poll(lambda: not any(_state(p) in ("T", "t") for p in children + leaders), what="resume")
    rt.kill("n1")
    assert not rt.is_running("n1")
    assert not any(_alive(p) for p in children + leaders)


def test_one_service_is_killed_paused_and_resumed_alone(rt, tmp_path):
    rt.start("n1", svc("a", SLEEPER))
    rt.start("n1", svc("b", SLEEPER))
    rt.pause("n1", "a")
    assert rt.is_paused("n1", "a") and not rt.is_paused("n1", "b")
    assert not rt.is_paused("n1")                 # the node as a whole is not paused
    rt.resume("n1", "a")
    rt.kill("n1", "b")
    assert rt.is_running("n1", "a") and not rt.is_running("n1", "b") and rt.is_running("n1")
    rt.start("n1", svc("b", SLEEPER))
    assert rt.is_running("n1", "b")
    rt.stop("n1")
    assert not rt.is_running("n1")


def test_files_are_written_before_start_and_env_is_set(rt, tmp_path):
    reader = [sys.executable, "-c", "import os; print(open('conf/x.cfg').read(), "
              "os.environ['CHAOS_T'], flush=True)"]
    rt.start("n1", svc("r", reader, files={"conf/x.cfg": "hello"}, env={"CHAOS_T": "yes"}))
    out = tmp_path / "nodes" / "n1" / "r.out"
    _poll(lambda: "hello yes" in out.read_text(), what="the service's output")


def test_readiness_waits_for_the_port_and_names_a_failure(rt, tmp_path):
    ports = rt.node_ports("n1", {MAIN: 7000, "peer": 7001})
    assert set(ports) == {MAIN, "peer"} and len(set(ports.values())) == 2
    rt.start("n1", Service(MAIN, SERVER + [str(ports[MAIN])], ready_timeout=20))
    with socket.create_connection(("127.0.0.1", ports[MAIN]), timeout=2):
        pass  # start() returned only once the port accepted
    crash = [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(1)"]
    with pytest.raises(SetupError, match=r"node n1: service peer exited before it was ready.*"
                                         r"bad config line 3"):
        rt.start("n1", Service("peer", crash, ready_port="peer"))
    rt.node_ports("n2", {MAIN: 7000})
    with pytest.raises(SetupError, match=r"node n2: service main not accepting connections"):
        rt.start("n2", Service(MAIN, SLEEPER, ready_timeout=0.5))


def test_node_ports_are_distinct_across_nodes(rt):
    a = rt.node_ports("n1", {MAIN: 7000, "peer": 7001})
    b = rt.node_ports("n2", {MAIN: 7000, "peer": 7001})
    assert len(set(a.values()) | set(b.values())) == 4
    assert rt.node_ports("n1", {MAIN: 7000, "peer": 7001}) == a   # stable for restarts


def test_check_binaries_names_the_package(rt):
    rt.check_binaries({"sh": "dash"})
    with pytest.raises(SetupError, match=r"missing no-such-exe-1 \(package pkg-one\).*"
                                         r"apt-get install pkg-one pkg-two"):
        rt.check_binaries({"no-such-exe-1": "pkg-one", "no-such-exe-2": "pkg-two", "sh": "dash"})


def test_run_and_placement(rt):
    res = rt.run("n1", "echo hi; pwd")
    assert res.ok and res.out.split() == ["hi", rt.data_dir("n1")]
    assert not rt.run("n1", "exit 3").ok and rt.run("n1", "exit 3").code == 3
    assert rt.proxy_server() is None and rt.capabilities == frozenset()
    assert os.path.isdir(os.path.join(rt.code_root("n1"), "targets"))
    assert rt.python("n1") == sys.executable and rt.listen_host("n1") == "127.0.0.1"


def test_start_twice_is_an_error(rt):
    rt.start("n1", svc(MAIN, SLEEPER))
    with pytest.raises(SetupError, match="already running"):
        rt.start("n1", svc(MAIN, SLEEPER))


def test_missing_program_is_a_setup_error(rt):
    with pytest.raises(SetupError, match="cannot start node n1 service main"):
        rt.start("n1", svc(MAIN, ["/nonexistent/program"]))


def test_teardown_kills_paused_nodes(rt):
    rt.start("n1", svc(MAIN, SLEEPER))
    rt.start("n2", svc(MAIN, SLEEPER))
    pids = [rt.pid("n1"), rt.pid("n2")]
    rt.pause("n2")
    rt.teardown()
    assert not any(_alive(p) for p in pids)


def test_nodes_die_with_a_sigkilled_controller(tmp_path):
    """Even a controller killed with SIGKILL leaves no node behind (PR_SET_PDEATHSIG)."""
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from chaos.runtime.local import LocalRuntime\n"
        "from chaos.target import Service\n"
        "r = LocalRuntime(); r.setup(['n1'], %r)\n"
        "r.start('n1', Service('main', [sys.executable, '-c', 'import time; time.sleep(60)'],"
        " ready_port=None))\n"
        "print(r.pid('n1'), flush=True); time.sleep(60)\n"
    ) % (str(Path(__file__).resolve().parents[1]), str(tmp_path))
    ctl = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        node_pid = int(ctl.stdout.readline())
        assert _alive(node_pid)
        os.kill(ctl.pid, signal.SIGKILL)
        ctl.wait(5)
        _poll(lambda: not _alive(node_pid), 5, "the node to die")
    finally:
        ctl.kill()


def test_node_ports_are_outside_the_ephemeral_range():
    """Proxies and clients bind port 0 while nodes start: node ports must not be in that pool."""
    from chaos.runtime.local import _ephemeral_range, node_port

    low, high = _ephemeral_range()
    ports = {node_port() for _ in range(50)}
    assert all(1024 <= p < low for p in ports)
    for p in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # really free
