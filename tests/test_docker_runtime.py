"""The docker runtime against a real engine: containers, SSH control, signals, iptables, cleanup."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from chaos.errors import SetupError
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.docker

SLEEPER = ["python3", "-c", "import time\nprint('up', flush=True)\ntime.sleep(1e9)"]


def svc(argv: list[str], name: str = "main", **kw):
    """A service that is not waited for (these tests check readiness themselves)."""
    from chaos.target import Service

    return Service(name, argv, ready_port=kw.pop("ready_port", None), **kw)


def _engine():
    from chaos.control.engine import docker_client

    return docker_client()


def _left(test_id: str) -> tuple[list, list]:
    """Containers and networks of `test_id` still known to the engine."""
    client = _engine()
    label = {"label": f"chaos.test={test_id}"}
    return client.containers.list(all=True, filters=label), client.networks.list(filters=label)


@pytest.fixture(scope="module")
def image():
    from chaos.images import ensure_node_image

    return ensure_node_image(_engine(), "kvlite")


@pytest.fixture(scope="module")
def cluster(image, tmp_path_factory):
    """Three nodes with NET_ADMIN (the iptables backend), shared by the tests of this module."""
    from chaos.runtime.docker import DockerRuntime

    rt = DockerRuntime(net_admin=True, image=image)
    rt.setup(["n1", "n2", "n3"], str(tmp_path_factory.mktemp("store")))
    try:
        yield rt
    finally:
        rt.teardown()
        assert _left(rt.test_id) == ([], [])


def test_containers_are_labelled_isolated_and_not_privileged(cluster):
    client = _engine()
    containers, networks = _left(cluster.test_id)
    assert len(containers) == 3 and len(networks) == 1
    assert networks[0].name == cluster.network_name
    for container in containers:
        attrs = container.attrs
        node = container.labels["chaos.node"]
        assert attrs["Config"]["Hostname"] == node
        assert attrs["HostConfig"]["Privileged"] is False
        assert attrs["HostConfig"]["CapAdd"] == ["NET_ADMIN"]
        assert list(attrs["NetworkSettings"]["Networks"]) == [cluster.network_name]
        assert cluster.host(node) == attrs["NetworkSettings"]["Networks"][cluster.network_name][
            "IPAddress"]
    assert cluster.nodes() == ["n1", "n2", "n3"]
    assert cluster.run("n2", "hostname", check=True).out.strip() == "n2"
    # the code is uploaded, not baked: chaos imports inside the node
    res = cluster.run("n1", "PYTHONPATH=/opt/chaos python3 -c 'import chaos.errors, targets'")
    assert res.ok, res.err
    del client


def _wait_output(rt, node: str, count: int, timeout: float = 10) -> None:
    """Wait until the node's log holds `count` lines "up" (the sleeper got going)."""
    deadline = time.monotonic() + timeout
    while rt.run(node, f"grep -c '^up$' {rt.data_dir(node)}/main.out").out.strip() != str(count):
        assert time.monotonic() < deadline, f"{node} printed no 'up' #{count}"
        time.sleep(0.05)


def test_process_lifecycle_kill_pause_restart_logs(cluster, tmp_path):
    rt = cluster
    assert not rt.is_running("n1")
    rt.start("n1", svc(SLEEPER))
    _wait_output(rt, "n1", 1)
    assert rt.is_running("n1") and not rt.is_paused("n1")
    with pytest.raises(SetupError, match="already running"):
        rt.start("n1", svc(SLEEPER))
    rt.pause("n1")
    assert rt.is_paused("n1") and rt.is_running("n1")
    rt.resume("n1")
    assert not rt.is_paused("n1")
    rt.kill("n1")
    assert not rt.is_running("n1")
    # the container survives a kill, so the node restarts in place
    rt.start("n1", svc(SLEEPER))
    assert rt.is_running("n1")
    _wait_output(rt, "n1", 2)
    rt.pause("n1")
    rt.stop("n1", timeout=2)  # a paused node still stops (SIGCONT before SIGTERM)
    assert not rt.is_running("n1")
    rt.stop("n1")  # no error when already stopped
    rt.collect_logs("n1", str(tmp_path / "n1"))
    assert (tmp_path / "n1" / "main.out").read_text().count("up") == 2
    assert rt.data_dir("n1") == "/var/lib/chaos/n1"


#: prints the pid of a child it forks (which inherits its process group), then sleeps
FORKER = ["python3", "-c", "import subprocess, time\n"
          "c = subprocess.Popen(['sleep', '1000'])\nprint(c.pid, flush=True)\ntime.sleep(1e9)"]


def _child(rt, node: str, service: str) -> int:
    deadline = time.monotonic() + 10
    while True:
        out = rt.run(node, f"cat {service}.out").out.strip()
        if out.isdigit():
            return int(out)
        assert time.monotonic() < deadline, f"{node}/{service} printed no child pid"
        time.sleep(0.05)


def _state(rt, node: str, pid: int) -> str:
    res = rt.run(node, f"cut -d' ' -f3 /proc/{pid}/stat 2>/dev/null || echo -")
    return res.out.strip() or "-"


def test_two_services_whole_node_and_single_service_faults(cluster):
    """kill/pause of the node reach every process of every service (children included);
    a named service is killed alone; files are written before start; readiness is waited."""
    rt = cluster
    rt.node_ports("n2", {"main": 7000, "web": 9100})
    rt.start("n2", svc(FORKER, "a"))
    rt.start("n2", svc(FORKER, "b", files={"conf/b.txt": "hello"}))
    rt.start("n2", svc(["python3", "-m", "http.server", "9100", "--bind", "0.0.0.0"], "web",
                       ready_port="web"))
    try:
        assert rt.run("n2", "cat conf/b.txt").out == "hello"
        kids = [_child(rt, "n2", "a"), _child(rt, "n2", "b")]
        leaders = [rt.procs.pid("n2", "a"), rt.procs.pid("n2", "b")]
        rt.pause("n2")
        assert rt.is_paused("n2")
        assert {_state(rt, "n2", p) for p in kids + leaders} == {"T"}
        rt.resume("n2")
        rt.kill("n2", "b")
        assert rt.is_running("n2", "a") and not rt.is_running("n2", "b")
        assert _state(rt, "n2", kids[1]) in ("-", "Z") and _state(rt, "n2", kids[0]) != "-"
        rt.kill("n2")
        assert not rt.is_running("n2")
        assert all(_state(rt, "n2", p) in ("-", "Z") for p in kids + leaders)
        with pytest.raises(SetupError, match=r"node n2: service crash exited before it was "
                                             r"ready.*oops"):
            rt.start("n2", svc(["sh", "-c", "echo oops; exit 1"], "crash", ready_port="web"))
    finally:
        rt.kill("n2")


def test_stop_escalates_to_sigkill(cluster):
    cluster.start("n3", svc(["python3", "-c",
                             "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                             "print('ignoring-term', flush=True)\ntime.sleep(1e9)"]))
    out = f"{cluster.data_dir('n3')}/main.out"
    wait_for(lambda: cluster.run("n3", f"grep -c '^ignoring-term$' {out}").out.strip() != "0",
             10, "n3 to ignore SIGTERM")  # its handler is installed
    started = time.monotonic()
    cluster.stop("n3", timeout=1)
    assert not cluster.is_running("n3")
    assert 0.9 < time.monotonic() - started < 10


def _probe(rt, src: str, dst: str, port: int) -> bool:
    """Can src open a TCP connection to dst:port (1 s timeout)?"""
    code = (f"import socket\ntry:\n socket.create_connection(('{rt.host(dst)}', {port}), "
            f"timeout=1).close(); print('open')\nexcept OSError: print('closed')")
    return rt.run(src, f"python3 -c \"{code}\"", timeout=15).out.strip() == "open"


def test_iptables_partition_verified_by_tcp_probe(cluster):
    from chaos.net.iptables import IptablesNet

    rt = cluster
    rt.start("n2", svc(["python3", "-m", "http.server", "9000", "--bind", "0.0.0.0"]))
    net = IptablesNet.for_runtime(rt)
    try:
        deadline = time.monotonic() + 10
        while not _probe(rt, "n1", "n2", 9000):
            assert time.monotonic() < deadline, "http.server on n2 never answered"
            time.sleep(0.2)
        net.partition([["n1"], ["n2", "n3"]])
        assert net.verify() == []
        assert not _probe(rt, "n1", "n2", 9000)
        assert _probe(rt, "n3", "n2", 9000)  # same side: still connected
        # a rule deleted behind our back is reported, not ignored
        rt.run("n2", f"iptables -w -D INPUT -s {rt.host('n1')}/32 -m comment --comment "
                     f"{net.comment} -j DROP", check=True)
        assert net.verify() == ["cut n1->n2 missing on n2"]
        # heal removes exactly our rules: a foreign rule stays
        rt.run("n3", "iptables -w -A INPUT -s 10.254.254.254/32 -j DROP", check=True)
        net.heal()
        assert net.verify() == []
        assert "10.254.254.254" in rt.run("n3", "iptables -w -S INPUT").out
        assert _probe(rt, "n1", "n2", 9000)
        net.cut("n3", "n2")
        assert net.verify() == [] and not _probe(rt, "n3", "n2", 9000)
        assert _probe(rt, "n1", "n2", 9000)
    finally:
        net.heal()
        rt.run("n3", "iptables -w -D INPUT -s 10.254.254.254/32 -j DROP")
        rt.stop("n2")


def test_no_net_admin_without_iptables_and_teardown_removes_all(image, tmp_path):
    from chaos.net.iptables import IptablesNet
    from chaos.runtime.docker import DockerRuntime

    rt = DockerRuntime(image=image)
    rt.setup(["n1", "n2"], str(tmp_path))
    try:
        net = IptablesNet.for_runtime(rt)
        with pytest.raises(SetupError, match="NET_ADMIN"):
            net.cut("n1", "n2")
        rt.start("n1", svc(SLEEPER))
    finally:
        started = time.monotonic()
        rt.teardown()
        took = time.monotonic() - started
    assert _left(rt.test_id) == ([], [])
    assert took < 10
    rt.teardown()  # idempotent


def test_failed_setup_leaves_nothing(image, tmp_path):
    from chaos.runtime.docker import DockerRuntime

    rt = DockerRuntime(image="chaos-node-kvlite:does-not-exist")
    with pytest.raises(SetupError, match="image chaos-node-kvlite:does-not-exist not found: run"):
        rt.setup(["n1", "n2"], str(tmp_path))
    assert _left(rt.test_id) == ([], [])
    # a failure after the network and containers exist (sshd never answers) also cleans up
    from chaos.runtime.docker import DockerRuntime as Rt

    class NoSsh(Rt):
        def _add_node(self, node):
            super()._add_node(node)
            raise SetupError("injected failure after the container started")

    rt = NoSsh(image=image)
    with pytest.raises(SetupError, match="injected"):
        rt.setup(["n1", "n2"], str(tmp_path))
    assert _left(rt.test_id) == ([], [])


def test_controller_sigkilled_then_chaos_down(image, tmp_path):
    """A controller killed with SIGKILL mid-run leaves containers; `chaos down` removes them."""
    script = textwrap.dedent(f"""
        import sys, time
        from chaos.runtime.docker import DockerRuntime
        from chaos.net.iptables import IptablesNet
        from chaos.target import Service
        rt = DockerRuntime(image={image!r}, net_admin=True)
        rt.setup(["n1", "n2"], {str(tmp_path)!r})
        rt.start("n1", Service("main", ["sleep", "1000"], ready_port=None))
        IptablesNet.for_runtime(rt).partition([["n1"], ["n2"]])
        print(rt.test_id, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    test_id = ""
    try:
        test_id = (proc.stdout.readline() if proc.stdout else "").strip()
        assert test_id, "the controller did not finish setup"
        containers, networks = _left(test_id)
        assert len(containers) == 2 and len(networks) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
    down = subprocess.run([sys.executable, "-m", "chaos", "down", "--test", test_id], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert down.returncode == 0, down.stderr
    assert "removed 2 container(s), 1 network(s)" in down.stdout
    # the iptables rules lived in the containers' network namespaces: gone with them
    assert _left(test_id) == ([], [])


def test_proxy_container(cluster):
    try:
        import chaos.net.proxy.__main__  # noqa: F401
    except ImportError:
        pytest.skip("chaos.net.proxy has no __main__ yet")
    import json
    import urllib.request

    url = cluster.start_proxy_container()
    assert url == f"http://{cluster.host('proxy')}:8474"
    with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
        assert resp.status == 200
    assert "proxy" not in cluster.nodes()
    json.dumps(url)


def test_kvlite_cluster_fails_over_under_an_iptables_partition(cluster):
    """End to end: kvlite nodes in containers elect a leader, and a new one when it is cut off."""
    from chaos.net.iptables import IptablesNet
    from chaos.target import Addr, Endpoints, NodeConfig
    from targets.kvlite.plugin import KvliteTarget

    rt, nodes, port = cluster, ["n1", "n2", "n3"], 7000
    target = KvliteTarget()
    opts = target.validate_options({"failover": "majority", "replication": "quorum"})
    addrs = Endpoints.main_only({n: Addr(rt.host(n), port) for n in nodes})

    def leaders(among: list[str]) -> dict[str, int]:
        seen = {}
        for node in among:
            try:
                status = target.status(node, addrs, timeout=1)
            except (OSError, ValueError):
                continue
            if status.get("role") == "leader":
                seen[node] = status.get("term")
        return seen

    def wait_leader(among: list[str], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = leaders(among)
            if len(seen) == 1:
                return next(iter(seen))
            time.sleep(0.2)
        raise AssertionError(f"no single leader among {among}: {leaders(among)}")

    net = IptablesNet.for_runtime(rt, nodes)
    try:
        for node in nodes:
            config = NodeConfig(node, Addr(rt.listen_host(node), port),
                                {p: addrs[p] for p in nodes if p != node}, rt.data_dir(node), opts,
                                ports=rt.node_ports(node, target.ports),
                                code_root=rt.code_root(node), python=rt.python(node))
            for service in target.services(config):
                rt.start(node, service)   # returns once the main port accepts connections
        first = wait_leader(nodes)
        net.isolate(first)
        assert net.verify() == []
        rest = [n for n in nodes if n != first]
        second = wait_leader(rest)
        assert second != first
        net.heal()
        rt.kill(second)
        assert not rt.is_running(second)
        third = wait_leader([n for n in nodes if n != second])
        assert third != second
    finally:
        net.heal()
        for node in nodes:
            rt.stop(node, timeout=2)
