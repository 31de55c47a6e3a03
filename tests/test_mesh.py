"""The partition mesh over the embedded proxy, with a real echo server standing in for each node."""
from __future__ import annotations

import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chaos.errors import BadInput
from chaos.net.client import ProxyClient
from chaos.net.echo import EchoServer
from chaos.net.mesh import SHAPES, Mesh

NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.fixture
def echoes():
    servers = {n: EchoServer() for n in NODES}
    yield servers
    for e in servers.values():
        e.close()


@pytest.fixture
def mesh(server, echoes):
    m = Mesh(ProxyClient(server.url), {n: e.addr for n, e in echoes.items()})
    m.setup()
    yield m
    m.teardown()


def talks(addr, timeout=1.0) -> bool:
    """True when a message sent to `addr` comes back (the link carries data both ways)."""
    try:
        with socket.create_connection((addr.host, addr.port), timeout=timeout) as s:
            s.sendall(b"hello")
            got = b""
            while len(got) < 5:
                chunk = s.recv(16)
                if not chunk:
                    return False
                got += chunk
            return True
    except OSError:
        return False


def reachable(mesh):
    """The node links that carry data both ways (probed in parallel: blackholes time out)."""
    links = mesh.node_links()
    with ThreadPoolExecutor(len(links)) as pool:
        ok = list(pool.map(lambda link: talks(mesh.peer_addr(*link)), links))
    return {link for link, good in zip(links, ok) if good}


def test_setup_creates_every_directed_link(mesh, server):
    proxies = ProxyClient(server.url).proxies()
    assert len(proxies) == 5 * 4 + 5
    assert "n1->n2" in proxies and "client->n3" in proxies
    addrs = ({mesh.peer_addr(a, b) for a, b in mesh.node_links()}
             | {mesh.client_addr(n) for n in NODES})
    assert len(addrs) == 25  # every link has its own port
    assert reachable(mesh) == set(mesh.node_links())
    assert all(talks(mesh.client_addr(n)) for n in NODES)
    assert set(mesh.peers("n1")) == {"n2", "n3", "n4", "n5"}
    assert mesh.verify() == []


def test_partition_cuts_exactly_the_cross_links(mesh):
    done = mesh.partition([["n1", "n2"], ["n3", "n4", "n5"]])
    cross = {(a, b) for a in ("n1", "n2") for b in ("n3", "n4", "n5")}
    cross |= {(b, a) for a, b in cross}
    assert {tuple(link) for link in done["cut"]} == cross
    assert done["partition"] == [["n1", "n2"], ["n3", "n4", "n5"]]
    assert reachable(mesh) == set(mesh.node_links()) - cross
    assert all(talks(mesh.client_addr(n)) for n in NODES)  # clients are never cut
    assert mesh.verify() == []
    assert mesh.state()["faulty"] is True
    healed = mesh.heal()
    assert len(healed["enabled"]) == 12
    assert reachable(mesh) == set(mesh.node_links())
    assert mesh.verify() == [] and mesh.state()["faulty"] is False


def test_drop_mode_blackholes_cross_links(mesh):
    mesh.partition([["n1"], ["n2", "n3", "n4", "n5"]], mode="drop")
    blocked = {(a, b) for a, b in mesh.node_links() if "n1" in (a, b)}
    assert reachable(mesh) == set(mesh.node_links()) - blocked
    assert mesh.verify() == []
    mesh.heal()
    assert reachable(mesh) == set(mesh.node_links())


def test_new_partition_replaces_the_old(mesh):
    mesh.partition([["n1"], ["n2", "n3", "n4", "n5"]])
    mesh.partition([["n5"], ["n1", "n2", "n3", "n4"]])
    blocked = {(a, b) for a, b in mesh.node_links() if "n5" in (a, b)}
    assert reachable(mesh) == set(mesh.node_links()) - blocked
    assert mesh.verify() == []


def test_one_way_cut(mesh, echoes):
    done = mesh.cut("n1", "n2")
    assert done["cut"] == ["n1", "n2"] and done["one_way"] is True
    # n1's bytes to n2 never arrive at n2
    before = echoes["n2"].received
    assert not talks(mesh.peer_addr("n1", "n2"), timeout=0.5)
    assert echoes["n2"].received == before
    # n2's bytes reach n1 (n1's server counts them) but n1's replies are dropped
    before = echoes["n1"].received
    assert not talks(mesh.peer_addr("n2", "n1"), timeout=0.5)
    deadline = time.monotonic() + 5
    while echoes["n1"].received < before + 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert echoes["n1"].received == before + 5
    assert reachable(mesh) == set(mesh.node_links()) - {("n1", "n2"), ("n2", "n1")}
    assert mesh.verify() == []
    assert mesh.state()["one_way"] == [["n1", "n2"]]
    mesh.heal()
    assert reachable(mesh) == set(mesh.node_links())


def test_reset_drops_live_connections_but_keeps_cuts(mesh):
    addr = mesh.peer_addr("n1", "n2")
    live = socket.create_connection((addr.host, addr.port), timeout=2)
    live.sendall(b"x")
    assert live.recv(1) == b"x"
    mesh.partition([["n1", "n2", "n3", "n4"], ["n5"]])
    done = mesh.reset([("n1", "n2"), ("n1", "n5")])
    assert done == {"reset": [["n1", "n2"]]}
    live.settimeout(2)
    try:
        assert live.recv(1) == b""
    except ConnectionResetError:
        pass
    live.close()
    assert talks(addr)
    assert mesh.verify() == []


def test_verify_detects_tampering(mesh, server):
    api = ProxyClient(server.url)
    mesh.partition([["n1", "n2"], ["n3", "n4", "n5"]])
    api.enable("n1->n3")  # somebody undid part of the partition
    problems = mesh.verify()
    assert len(problems) == 2 and all(p.startswith("n1->n3") for p in problems)
    mesh.heal()
    mesh.cut("n4", "n5")
    api.delete_toxic("n4->n5", "chaos-cut-n4-n5")
    assert mesh.verify() == ["n4->n5: blackhole toxic chaos-cut-n4-n5 on upstream is missing"]
    api.disable("n2->n1")
    assert any(p.startswith("n2->n1: enabled=False") for p in mesh.verify())


def test_latency_and_bandwidth_on_chosen_links(mesh):
    def rtt(addr):
        with socket.create_connection((addr.host, addr.port), timeout=5) as s:
            start = time.monotonic()
            s.sendall(b"x")
            s.recv(1)
            return time.monotonic() - start

    done = mesh.latency([("n1", "n2")], 100)
    assert done == {"latency": 100, "jitter": 0, "links": [["n1", "n2"]]}
    assert rtt(mesh.peer_addr("n1", "n2")) >= 0.19  # 100 ms each way
    assert rtt(mesh.peer_addr("n2", "n1")) < 0.15
    mesh.latency([("n1", "n2")], 10)  # replaces, no duplicate-toxic error
    assert rtt(mesh.peer_addr("n1", "n2")) < 0.15
    mesh.latency([("client", "n3")], 50)
    assert mesh.state()["toxics"]["client->n3"] == ["chaos-latency-downstream",
                                                    "chaos-latency-upstream"]
    mesh.bandwidth(None, 1000)
    assert len(mesh.state()["toxics"]) == 21
    mesh.heal()
    assert mesh.state()["toxics"] == {}
    assert rtt(mesh.peer_addr("n1", "n2")) < 0.15


def test_bad_input(mesh):
    with pytest.raises(BadInput, match="unknown node 'n9'"):
        mesh.partition([["n1"], ["n9"]])
    with pytest.raises(BadInput, match="in no partition group"):
        mesh.partition([["n1"], ["n2"]])
    with pytest.raises(BadInput):
        mesh.cut("n1", "n1")
    with pytest.raises(BadInput):
        mesh.latency(None, -5)
    with pytest.raises(BadInput):
        mesh.latency([("n1", "nX")], 5)
    with pytest.raises(BadInput, match="unknown partition shape"):
        mesh.shape("triangle", random.Random(1))
    with pytest.raises(BadInput):
        mesh.shape("isolate-leader", random.Random(1))
    with pytest.raises(BadInput):
        mesh.partition([["n1"], ["n2", "n3", "n4", "n5"]], mode="nope")


def connected(groups, a, b):
    return any(a in g and b in g for g in groups)


@pytest.mark.parametrize("n", [3, 4, 5, 7, 9])
def test_shapes(server, n):
    nodes = {f"n{i}": None for i in range(1, n + 1)}
    mesh = Mesh(ProxyClient(server.url), nodes)  # shapes need no proxies
    names = list(nodes)
    rng = random.Random(7)
    assert mesh.shape("halves", rng) == [names[: n // 2], names[n // 2:]]
    halves = mesh.shape("random-halves", rng)
    assert sorted(halves[0] + halves[1]) == sorted(names) and len(halves[0]) == n // 2
    lone = mesh.shape("isolate-one", rng)
    assert len(lone[0]) == 1 and len(lone[1]) == n - 1
    others = [x for x in names if x != "n2"]
    assert mesh.shape("isolate-leader", rng, leader="n2") == [["n2"], others]
    bridge = mesh.shape("bridge", rng)
    both = set(bridge[0]) & set(bridge[1])
    assert len(both) == 1 and set(bridge[0]) | set(bridge[1]) == set(names)
    b = both.pop()
    assert all(connected(bridge, b, x) for x in names if x != b)
    ring = mesh.shape("majorities-ring", rng)
    majority = n // 2 + 1
    views = {a: frozenset([a] + [x for x in names if x != a and connected(ring, a, x)])
             for a in names}
    assert all(len(v) >= majority for v in views.values())
    if n >= 4:
        assert all(len(v) < n for v in views.values())  # nobody sees everyone
    if n in (4, 5):
        assert all(len(v) == majority for v in views.values())
        assert len(set(views.values())) == n  # no two nodes see the same majority
    for name in SHAPES:
        once = mesh.shape(name, random.Random(3), leader="n1")
        assert mesh.shape(name, random.Random(3), leader="n1") == once


def test_shapes_drive_partition(mesh):
    ring = mesh.shape("majorities-ring", random.Random(2))
    done = mesh.partition(ring)
    assert len(done["cut"]) == 10  # 5 nodes, each linked to 2 of 4 others: 10 directed cuts
    assert mesh.verify() == []
    expected = {(a, b) for a, b in mesh.node_links() if connected(ring, a, b)}
    assert reachable(mesh) == expected


def test_teardown_deletes_only_its_proxies(server, echoes):
    api = ProxyClient(server.url)
    api.create_proxy("other", "127.0.0.1:1", enabled=False)
    try:
        m = Mesh(api, {n: e.addr for n, e in echoes.items()}, prefix="t-")
        m.setup()
        assert m.name("n1", "n2") == "t-n1->n2"
        m.partition(m.shape("isolate-one", random.Random(1)))
        m.heal()
        m.teardown()
        assert set(api.proxies()) == {"other"}
    finally:
        api.delete_proxy("other")
