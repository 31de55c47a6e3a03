"""The transparent fault mesh on real containers: nat rules, real proxies, real echo servers.

Each node runs `python3 -m chaos.net.echo` on two declared ports (7000 main, 7001 aux, both
proxied) and one undeclared port (7002, not proxied: the "bypass" path). Nodes dial each
other's REAL addresses; the nat rules steer them through the proxy container.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from chaos.control.remote import parallel
from chaos.target import Addr, Endpoints

pytestmark = [pytest.mark.docker, pytest.mark.integration]

NODES = ["n1", "n2", "n3"]
PORTS = {"main": 7000, "aux": 7001}
BYPASS_PORT = 7002


def wait_listening(run, node: str, ports) -> None:
    """Until `node` listens on every port (the echo servers start in the background)."""
    checks = " && ".join(f"ss -Hltn 'sport = :{p}' | grep -q ." for p in ports)
    res = run(node, f"for i in $(seq 100); do if {checks}; then exit 0; fi; sleep 0.1; done; "
                    "exit 1", timeout=30)
    assert res.ok, f"{node}: echo servers not listening on {list(ports)}"

#: run in a node: connect to each "ip:port" in argv[1], send, wait for the echo; one JSON line
PROBE = textwrap.dedent("""
    import json, socket, sys, time
    out = {}
    for target in sys.argv[1].split(","):
        host, port = target.rsplit(":", 1)
        try:
            t = time.monotonic()
            with socket.create_connection((host, int(port)), timeout=float(sys.argv[2])) as s:
                s.settimeout(float(sys.argv[2]))
                s.sendall(b"ping")
                got = b""
                while len(got) < 4:
                    chunk = s.recv(4)
                    if not chunk:
                        raise OSError("closed")
                    got += chunk
                out[target] = ["ok", (time.monotonic() - t) * 1000]
        except OSError as exc:
            out[target] = ["fail", str(exc)[:60]]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image
    from chaos.runtime.docker import DockerRuntime

    runtime = DockerRuntime(net_admin=True, image=ensure_node_image(docker_client(), "kvlite"))
    runtime.setup(NODES, str(tmp_path_factory.mktemp("store")))
    try:
        def echoes(node: str) -> None:
            for port in (*PORTS.values(), BYPASS_PORT):
                res = runtime.run(node, f"cd /opt/chaos && setsid nohup python3 -m chaos.net.echo "
                                        f"--port {port} --peers /tmp/peers-{port} "
                                        f">/tmp/echo-{port}.out 2>&1 </dev/null &")
                assert res.ok, res.err
            probe = "cat > /tmp/probe.py <<'EOF'\n" + PROBE + "EOF\n"
            assert runtime.run(node, probe).ok
            wait_listening(runtime.run, node, (*PORTS.values(), BYPASS_PORT))
        parallel(echoes, NODES)
        yield runtime
    finally:
        runtime.teardown()


@pytest.fixture
def mesh(rt):
    from chaos.net.client import ProxyClient
    from chaos.net.transparent import TransparentMesh

    place = rt.proxy_server()
    real = Endpoints({n: {name: Addr(rt.host(n), port) for name, port in PORTS.items()}
                      for n in NODES})
    m = TransparentMesh(ProxyClient(place.url), real, rt.run, listen_host=place.listen_host,
                        advertise_host=place.advertise_host, tag=f"{rt.test_id}:t")
    m.setup()
    yield m
    m.teardown()


def probe(rt, src: str, targets: list[str], timeout: float = 2.0) -> dict[str, list]:
    res = rt.run(src, f"python3 /tmp/probe.py {','.join(targets)} {timeout}", timeout=60)
    assert res.ok, res.err
    return json.loads(res.out.strip().splitlines()[-1])


def reachable(rt, port: int = 7000, timeout: float = 1.5) -> set[tuple[str, str]]:
    """The node links (at their REAL addresses) over which an echo comes back."""
    def one(src: str) -> set[tuple[str, str]]:
        ips = {rt.host(n): n for n in NODES if n != src}
        got = probe(rt, src, [f"{ip}:{port}" for ip in ips], timeout)
        return {(src, ips[t.rsplit(":", 1)[0]]) for t, (state, _) in got.items() if state == "ok"}
    return set().union(*parallel(one, NODES).values())


ALL = {(a, b) for a in NODES for b in NODES if a != b}


def nat_rules(rt, node: str) -> list[str]:
    rules = rt.run(node, "iptables -w -t nat -S OUTPUT").out.splitlines()
    return [rule for rule in rules if "chaos" in rule]


def test_real_addresses_go_through_the_proxies_and_b_sees_the_proxy(rt, mesh):
    for node in NODES:
        rt.run(node, "rm -f /tmp/peers-7000 /tmp/peers-7001")
    assert mesh.peer_addr("n1", "n2", "aux") == Addr(rt.host("n2"), 7001)  # real addresses
    assert reachable(rt, 7000) == ALL and reachable(rt, 7001) == ALL
    assert mesh.verify() == []
    assert all(len(nat_rules(rt, n)) == 4 for n in NODES)  # 2 peers x 2 ports
    traffic = mesh.traffic()
    assert traffic is not None and all(traffic[link] > 0 for link in ALL)
    # what b sees: every connection arrives from the proxy container's address
    proxy_ip = mesh.advertise_host
    for node in NODES:
        for port in PORTS.values():
            sources = {line.split()[0] for line in
                       rt.run(node, f"cat /tmp/peers-{port}").out.splitlines()}
            assert sources == {proxy_ip}, (node, port, sources)
    assert mesh.bypass() == []


def test_latency_is_added_on_every_port_and_removed_by_heal(rt, mesh):
    targets = [f"{rt.host('n2')}:7000", f"{rt.host('n2')}:7001", f"{rt.host('n2')}:{BYPASS_PORT}"]
    base = probe(rt, "n1", targets)
    assert all(state == "ok" for state, _ in base.values())
    mesh.latency(None, 100)
    slow = probe(rt, "n1", targets)
    # connect (instant: the proxy accepts) + one request/echo round trip = 2 x 100 ms
    assert slow[targets[0]][1] >= 195 and slow[targets[1]][1] >= 195
    assert slow[targets[2]][1] < 100  # the undeclared port is not proxied
    assert mesh.verify() == []
    mesh.heal()
    again = probe(rt, "n1", targets)
    assert again[targets[0]][1] < 100 and again[targets[1]][1] < 100


def test_partition_cuts_exactly_the_cross_links(rt, mesh):
    done = mesh.partition([["n1"], ["n2", "n3"]])
    cross = {("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n3", "n1")}
    assert {tuple(l) for l in done["cut"]} == cross
    assert reachable(rt, 7000) == ALL - cross
    assert reachable(rt, 7001) == ALL - cross  # every named port of the pair
    assert mesh.verify() == []
    mesh.heal()
    assert reachable(rt, 7000) == ALL
    assert mesh.verify() == []


def test_one_way_cut(rt, mesh):
    for node in NODES:
        rt.run(node, "rm -f /tmp/peers-7000")
    mesh.cut("n1", "n2")
    # n1's bytes to n2 vanish; n2's requests reach n1 but n1's replies vanish
    assert reachable(rt, 7000) == ALL - {("n1", "n2"), ("n2", "n1")}
    assert rt.run("n1", "cat /tmp/peers-7000").out.strip()  # n2 -> n1 arrived (the connect)
    assert mesh.verify() == []
    mesh.heal()
    assert reachable(rt, 7000) == ALL


def test_bypass_is_detected(rt, mesh):
    hold = ("python3 -c 'import socket,time,sys; s=socket.create_connection((sys.argv[1], "
            "int(sys.argv[2]))); time.sleep(30)' {} {} >/dev/null 2>&1 </dev/null &")
    assert rt.run("n1", "setsid nohup " + hold.format(rt.host("n2"), 7000)).ok
    assert rt.run("n3", "setsid nohup " + hold.format(rt.host("n2"), BYPASS_PORT)).ok
    import time

    deadline = time.monotonic() + 20
    found: list[str] = []
    while time.monotonic() < deadline:
        found = mesh.bypass()
        if found:
            break
        time.sleep(0.2)
    assert found and all("n3" in line and "n2" in line for line in found), found
    assert not any("n1" in line for line in found)  # the proxied connection is not a bypass
    rt.run("n1", "pkill -f 'time.sleep(30)' || true")
    rt.run("n3", "pkill -f 'time.sleep(30)' || true")


def test_teardown_removes_exactly_our_rules(rt, mesh):
    rt.run("n1", "iptables -w -t nat -A OUTPUT -d 192.0.2.1/32 -p tcp -m comment "
                 "--comment someone-else -j RETURN")
    try:
        mesh.partition([["n1", "n2"], ["n3"]])
        mesh.heal()
        assert all(len(nat_rules(rt, n)) == 4 for n in NODES)  # heal keeps the plumbing
        names = set(mesh.client.proxies())
        mesh.teardown()
        assert all(nat_rules(rt, n) == [] for n in NODES)
        assert not names & set(mesh.client.proxies())
        assert "someone-else" in rt.run("n1", "iptables -w -t nat -S OUTPUT").out
    finally:
        rt.run("n1", "iptables -w -t nat -D OUTPUT -d 192.0.2.1/32 -p tcp -m comment "
                     "--comment someone-else -j RETURN")


def test_iptables_evidence_counts_dropped_packets(rt):
    from chaos.net.iptables import IptablesNet

    net = IptablesNet(rt.run, {n: rt.host(n) for n in NODES}, f"chaos:{rt.test_id}-ev")
    try:
        net.partition([["n1"], ["n2", "n3"]])
        assert net.verify() == []
        target = f"{rt.host('n2')}:{BYPASS_PORT}"
        assert probe(rt, "n1", [target], 1.0)[target][0] != "ok"
        during = net.traffic()
        assert during[("n1", "n2")] > 0  # n1's SYNs were dropped at n2
        assert during.get(("n2", "n3"), 0) == 0
        net.heal()
        assert net.traffic()[("n1", "n2")] == during[("n1", "n2")]  # kept after the rules go
        assert "chaos" not in rt.run("n2", "iptables -w -S INPUT").out
    finally:
        net.heal()
