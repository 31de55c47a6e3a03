"""The transparent mesh on the ssh runtime: plain SSH hosts as root (containers stand in).

The proxies run in the controller (the embedded server bound to the address the hosts see
for it), the nat rules in each host; b sees connections from the controller's address.
"""
from __future__ import annotations

import pytest

from chaos.net.setup import build_net
from chaos.target import Addr, Endpoints
from tests.test_transparent_docker import ALL, NODES, PROBE, reachable, wait_listening

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.fixture(scope="module")
def ssh_rt(tmp_path_factory):
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image
    from chaos.runtime.docker import DockerRuntime
    from chaos.runtime.ssh import SshRuntime

    store = tmp_path_factory.mktemp("store")
    hosts = DockerRuntime(image=ensure_node_image(docker_client(), "kvlite"), net_admin=True)
    hosts.setup([f"h{n[1:]}" for n in NODES], str(store))
    try:
        rt = SshRuntime({n: hosts.host(f"h{n[1:]}") for n in NODES}, "root",
                        str(store / "ssh" / "id_ed25519"), data_root="/var/lib/chaos-ssh")
        rt.setup(NODES, str(store))
        try:
            for node in NODES:
                assert rt.run(node, "cd /opt/chaos && setsid nohup python3 -m chaos.net.echo "
                                    "--port 7000 --peers /tmp/peers-7000 >/dev/null 2>&1 "
                                    "</dev/null &").ok
                assert rt.run(node, "cat > /tmp/probe.py <<'EOF'\n" + PROBE + "EOF\n").ok
            for node in NODES:
                wait_listening(rt.run, node, (7000,))
            yield rt
        finally:
            rt.teardown()
    finally:
        hosts.teardown()


def test_transparent_mesh_over_ssh(ssh_rt):
    rt = ssh_rt
    assert "nat" in rt.capabilities
    real = Endpoints({n: {"main": Addr(rt.host(n), 7000)} for n in NODES})
    net = build_net("transparent", rt, real, needs_net=True, tag="ssh-test")
    try:
        mesh = net.faults
        assert net.peer("n1", "n2") == real.port("n2")  # real addresses
        assert reachable(rt) == ALL and mesh.verify() == []
        controller = mesh.advertise_host
        for node in NODES:
            seen = {l.split()[0] for l in rt.run(node, "cat /tmp/peers-7000").out.splitlines()}
            assert seen == {controller}, seen
        mesh.partition([["n1"], ["n2", "n3"]])
        assert reachable(rt) == ALL - {("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n3", "n1")}
        mesh.heal()
        assert reachable(rt) == ALL
        assert net.evidence is not None and mesh.traffic()[("n1", "n2")] > 0
    finally:
        net.close()
    for node in NODES:
        assert "chaos" not in rt.run(node, "iptables -w -t nat -S OUTPUT").out
    assert reachable(rt) == ALL  # without the mesh: direct again


def test_chaos_down_on_ssh_hosts_removes_mesh_rules(ssh_rt, tmp_path):
    from chaos.runtime.ssh import clean_hosts

    rt = ssh_rt
    real = Endpoints({n: {"main": Addr(rt.host(n), 7000)} for n in NODES})
    net = build_net("transparent", rt, real, needs_net=True, tag="ssh-down")
    try:
        assert all("chaos-mesh:ssh-down" in rt.run(n, "iptables -w -t nat -S OUTPUT").out
                   for n in NODES)
        rules, _killed = clean_hosts(rt.hosts, "root", rt.key_path)  # as `chaos down` does
        assert rules == 6  # 2 peers x 3 hosts
        assert all("chaos" not in rt.run(n, "iptables -w -t nat -S OUTPUT").out for n in NODES)
    finally:
        net.close()  # idempotent: nothing left to remove
