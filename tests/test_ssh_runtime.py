"""The ssh runtime against containers with sshd as the "existing hosts", and its error lines."""
from __future__ import annotations

import socket
import time

import pytest

from chaos.errors import BadInput, SetupError
from chaos.runtime.ssh import SshRuntime, read_nodes_file
from chaos.target import Service

SLEEPER = ["python3", "-c", "import time\nprint('up', flush=True)\ntime.sleep(1e9)"]


def test_nodes_file(tmp_path):
    path = tmp_path / "hosts.txt"
    path.write_text("# my hosts\n10.0.0.1\n10.0.0.2  # second\n\n10.0.0.3\n")
    assert read_nodes_file(str(path)) == {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3"}
    path.write_text("db1 10.0.0.1\ndb2 10.0.0.2\n")
    assert read_nodes_file(str(path)) == {"db1": "10.0.0.1", "db2": "10.0.0.2"}
    path.write_text("db1 10.0.0.1\ndb1 10.0.0.2\n")
    with pytest.raises(BadInput, match=r"hosts.txt:2: node db1 listed twice"):
        read_nodes_file(str(path))
    path.write_text("a b c\n")
    with pytest.raises(BadInput, match=r"hosts.txt:1: expected"):
        read_nodes_file(str(path))
    with pytest.raises(BadInput, match="cannot read nodes file"):
        read_nodes_file(str(tmp_path / "missing.txt"))


def test_missing_key_file(tmp_path):
    rt = SshRuntime({"n1": "127.0.0.1"}, "root", str(tmp_path / "nope"))
    with pytest.raises(SetupError, match="does not exist"):
        rt.setup(["n1"], str(tmp_path))


def test_unreachable_host_is_one_clear_error(tmp_path):
    from chaos.control.ssh import ensure_keypair

    key, _ = ensure_keypair(str(tmp_path))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = SshRuntime({"n1": "127.0.0.1"}, "root", key, port=port, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(SetupError, match=r"SSH host 127.0.0.1:\d+ unreachable.*check the address"):
        rt.setup(["n1"], str(tmp_path))
    assert time.monotonic() - started < 10
    with pytest.raises(SetupError, match="no host for node"):
        rt.setup(["n1", "n9"], str(tmp_path))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Two containers with sshd, made by the docker runtime, used as plain SSH hosts."""
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image
    from chaos.runtime.docker import DockerRuntime

    store = tmp_path_factory.mktemp("store")
    rt = DockerRuntime(image=ensure_node_image(docker_client(), "kvlite"), net_admin=True)
    rt.setup(["h1", "h2"], str(store))
    try:
        yield {"n1": rt.host("h1"), "n2": rt.host("h2")}, str(store / "ssh" / "id_ed25519")
    finally:
        rt.teardown()


@pytest.mark.docker
def test_key_refused_is_one_clear_error(hosts, tmp_path):
    from chaos.control.ssh import ensure_keypair

    addrs, _key = hosts
    other, _ = ensure_keypair(str(tmp_path))  # a key the hosts never saw
    rt = SshRuntime(addrs, "root", other)
    with pytest.raises(SetupError, match=r"SSH key refused by root@.*authorized_keys"):
        rt.setup(["n1", "n2"], str(tmp_path))
    assert rt.procs.sessions == {}


@pytest.mark.docker
def test_ssh_runtime_lifecycle_and_iptables(hosts, tmp_path):
    from chaos.net.iptables import IptablesNet

    addrs, key = hosts
    rt = SshRuntime(addrs, "root", key, data_root="/var/lib/chaos-ssh")
    rt.setup(["n1", "n2"], str(tmp_path))
    try:
        assert rt.host("n2") == addrs["n2"] and rt.nodes() == ["n1", "n2"]
        assert rt.data_dir("n1") == "/var/lib/chaos-ssh/n1"
        rt.start("n1", Service("main", SLEEPER, ready_port=None))
        assert rt.is_running("n1")
        rt.pause("n1")
        assert rt.is_paused("n1")
        rt.resume("n1")
        assert not rt.is_paused("n1")
        rt.kill("n1")
        assert not rt.is_running("n1")
        rt.start("n1", Service("main", ["python3", "-c", "import chaos.errors; print('code ok')"],
                               ready_port=None))
        deadline = time.monotonic() + 10
        while rt.is_running("n1") and time.monotonic() < deadline:
            time.sleep(0.05)
        rt.collect_logs("n1", str(tmp_path / "logs"))
        assert "code ok" in (tmp_path / "logs" / "main.out").read_text()
        assert rt.capabilities == {"nat", "own-address"} and rt.proxy_server() is None
        rt.check_binaries({"sh": "dash"})
        with pytest.raises(SetupError, match=r"host\(s\) n1, n2: missing nosuch-exe \(package "
                                             r"nosuch-pkg\): apt-get install nosuch-pkg"):
            rt.check_binaries({"nosuch-exe": "nosuch-pkg", "sh": "dash"})
        net = IptablesNet(rt.run, addrs, tag="chaos:ssh-test")
        net.cut("n1", "n2")
        assert net.verify() == []
        net.heal()
        assert net.verify() == [] and "ssh-test" not in rt.run("n2", "iptables -S INPUT").out
        rt.start("n2", Service("main", ["sleep", "1000"], ready_port=None))
    finally:
        rt.teardown()
    # teardown killed what it started, on the real host
    probe = SshRuntime(addrs, "root", key, data_root="/var/lib/chaos-ssh")
    probe.setup(["n2"], str(tmp_path))
    try:
        assert "sleep 1000" not in probe.run("n2", "ps -eo cmd").out
    finally:
        probe.teardown()


@pytest.mark.docker
def test_chaos_down_cleans_ssh_hosts(hosts, tmp_path):
    """After a controller crash, `chaos down --nodes-file` removes our rules and node processes."""
    import os
    import subprocess
    import sys

    from chaos.net.iptables import IptablesNet
    from tests.conftest import REPO

    addrs, key = hosts
    rt = SshRuntime(addrs, "root", key, data_root="/var/lib/chaos")
    rt.setup(["n1", "n2"], str(tmp_path))
    try:
        rt.start("n1", Service("main", ["sleep", "1001"], ready_port=None))
        rt.start("n2", Service("main", ["sleep", "1002"], ready_port=None))
        net = IptablesNet(rt.run, addrs, tag="chaos:crashed-test")
        net.partition([["n1"], ["n2"]])
        rt.run("n2", "iptables -w -A INPUT -s 10.254.254.253/32 -j DROP", check=True)  # not ours
        rt.procs.close()  # the controller "dies" without tearing down
        nodes_file = tmp_path / "hosts.txt"
        nodes_file.write_text("".join(f"{n} {h}\n" for n, h in addrs.items()))
        proc = subprocess.run(
            [sys.executable, "-m", "chaos", "down", "--nodes-file", str(nodes_file),
             "--ssh-key", key], cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
        assert "removed 2 iptables rule(s), killed 2 node process(es) on 2 host(s)" in proc.stdout
        probe = SshRuntime(addrs, "root", key, data_root="/var/lib/chaos-probe")
        probe.setup(["n1", "n2"], str(tmp_path))
        try:
            for node in ("n1", "n2"):
                assert "crashed-test" not in probe.run(node, "iptables -w -S INPUT").out
                assert "sleep 100" not in probe.run(node, "ps -eo cmd").out
            assert "10.254.254.253" in probe.run("n2", "iptables -w -S INPUT").out
        finally:
            probe.run("n2", "iptables -w -D INPUT -s 10.254.254.253/32 -j DROP")
            probe.teardown()
    finally:
        rt.procs.sessions.clear()
        rt.teardown()


@pytest.mark.docker
def test_output_that_arrives_after_the_exit_status_is_kept(hosts):
    """sshd sends a command's exit status when the shell exits, and EOF only when the last
    holder of its stdout closes it: output written after the status must not be dropped (a
    loaded host made /proc and iptables reads come back empty with status 0)."""
    from chaos.control.ssh import SshSession, load_key

    addrs, key = hosts
    session = SshSession(addrs["n1"], "root", load_key(key)).connect(timeout=30)
    try:
        res = session.run("(sleep 0.5; echo late) & echo early", timeout=15)
        assert res.ok and res.out.split() == ["early", "late"], res
    finally:
        session.close()


@pytest.mark.docker
def test_clock_fault_on_ssh_hosts_is_applied_read_back_and_healed(hosts, tmp_path):
    """libfaketime preloaded into a service started over SSH; the fault writes the control
    file on the host, the probe reads the offset and the rate back, the stop and the heal
    return the node to real time (docs/faults.md, "Clock faults")."""
    import random

    from chaos.faults import get
    from chaos.faults.clock import CONTROL
    from chaos.nemesis import Nemesis, NemesisContext

    addrs, key = hosts
    rt = SshRuntime(addrs, "root", key, data_root="/var/lib/chaos-clock")
    rt.setup(["n1"], str(tmp_path))
    clock = get("clock")
    nem = Nemesis(NemesisContext(runtime=rt, net=None, nodes=["n1"], leader=lambda: "n1",
                                 restart=lambda *a, **k: None, rng=random.Random(1),
                                 record=lambda op: None))
    try:
        rt.start("n1", Service("main", SLEEPER, env=clock.node_env(rt.data_dir("n1")),
                               files=clock.node_files(), ready_port=None))
        did, problems = clock.start(nem, {"node": "n1", "mode": "offset", "offset_s": -7.0})
        assert problems == [] and did["processes"] == 1, (did, problems)
        assert did["read_back"]["offset_s"] == pytest.approx(-7.0, abs=0.15)
        did, problems = clock.stop(nem, {})
        assert problems == [] and did["reset"] == ["n1"]
        assert did["read_back"]["n1"]["offset_s"] == pytest.approx(0.0, abs=0.15)
        did, problems = clock.start(nem, {"node": "n1", "mode": "rate", "rate": 0.5})
        assert problems == [] and did["read_back"]["wall_rate"] == pytest.approx(0.5, abs=0.05)
        healed, problems = clock.heal(nem)  # the end of a run (or Ctrl-C) inside the fault
        assert problems == [] and healed["clock"]["reset"] == ["n1"]
        assert rt.run("n1", f"cat {CONTROL}").out.strip() == "+0.000000 x1"
        assert clock.heal(nem) == ({}, [])  # nothing left applied
    finally:
        rt.teardown()
