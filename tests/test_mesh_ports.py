"""The mesh's named ports, client placement and traffic counters, over the embedded proxy."""
from __future__ import annotations

import pytest

from chaos.errors import BadInput
from chaos.net.base import BACKENDS, NetSetup, choose_backend
from chaos.net.client import ProxyClient
from chaos.net.echo import EchoServer
from chaos.net.mesh import Mesh
from chaos.target import Endpoints
from tests.test_mesh import talks

NODES = ["n1", "n2", "n3"]


@pytest.fixture
def echoes():
    servers = {(n, p): EchoServer() for n in NODES for p in ("main", "peer")}
    yield servers
    for e in servers.values():
        e.close()


@pytest.fixture
def mesh(server, echoes):
    real = Endpoints({n: {p: echoes[(n, p)].addr for p in ("main", "peer")} for n in NODES})
    m = Mesh(ProxyClient(server.url), real, placements=NODES)
    m.setup()
    yield m
    m.teardown()


def test_every_named_port_has_its_own_proxy_and_faults_cover_all_ports(mesh, echoes, server):
    names = set(ProxyClient(server.url).proxies())
    assert {"n1->n2", "n1->n2:peer", "client->n3", "client@n1->n2:peer"} <= names
    assert len(names) == (6 + 3 + 9) * 2  # node links, unplaced and placed clients, x 2 ports
    assert talks(mesh.peer_addr("n1", "n2", "peer"))
    before = echoes[("n2", "peer")].received
    assert talks(mesh.peer_addr("n1", "n2", "peer"))
    assert echoes[("n2", "peer")].received == before + 5  # it really is n2's peer port
    mesh.partition([["n1"], ["n2", "n3"]])
    assert not talks(mesh.peer_addr("n1", "n2", "peer")) and not talks(mesh.peer_addr("n1", "n2"))
    assert talks(mesh.peer_addr("n2", "n3", "peer"))
    assert mesh.verify() == []


def test_placed_clients_reach_only_what_their_node_reaches(mesh):
    done = mesh.partition([["n1"], ["n2", "n3"]])
    assert ["client@n1", "n2"] in done["clients_cut"] and ["client@n2", "n1"] in done["clients_cut"]
    assert talks(mesh.client_addr("n1", placement="n1"))
    assert not talks(mesh.client_addr("n2", placement="n1"))
    assert not talks(mesh.client_addr("n1", placement="n3"))
    assert talks(mesh.client_addr("n3", placement="n2"))
    assert all(talks(mesh.client_addr(n)) for n in NODES)  # unplaced clients: never cut
    assert mesh.verify() == []
    mesh.heal()
    assert talks(mesh.client_addr("n2", placement="n1"))
    with pytest.raises(BadInput):
        mesh.client_addr("n1", placement="n9")


def test_traffic_counts_the_dialers_bytes_per_link(mesh):
    start = mesh.traffic()
    assert start is not None and set(start) == set(mesh.node_links())
    assert talks(mesh.peer_addr("n3", "n1", "peer"))
    mesh.verify()  # probes connect without sending: not traffic
    after = mesh.traffic()
    assert after[("n3", "n1")] == start[("n3", "n1")] + 5
    assert all(after[l] == start[l] for l in mesh.node_links() if l != ("n3", "n1"))


def test_netsetup_gives_nodes_and_clients_their_addresses(mesh):
    real = Endpoints({n: dict(mesh.ports[n]) for n in NODES})
    ns = NetSetup("proxy", real, faults=mesh, _peer=mesh.peer_addr,
                  _client=lambda d, p, pl: mesh.client_addr(d, p, pl))
    assert ns.peer_ports("n1")["n2"]["peer"] == mesh.peer_addr("n1", "n2", "peer")
    eps = ns.client_endpoints("n2")
    assert eps["n1"] == mesh.client_addr("n1", placement="n2")
    assert eps.real["n1"]["main"] == real.port("n1")  # announced real addresses map back
    n3 = real.port("n3")
    assert eps.route(n3.host, n3.port) == mesh.client_addr("n3", placement="n2")
    plain = NetSetup("none", real)
    assert plain.peer("n1", "n2", "peer") == real.port("n2", "peer")


class T:
    name = "t"

    def __init__(self, mesh: bool) -> None:
        self.supports_mesh = mesh


def test_choose_backend():
    assert choose_backend("auto", T(True), "local", {"partition", "latency"}) == "proxy"
    assert choose_backend("auto", T(False), "docker", {"latency"}) == "transparent"
    assert choose_backend("auto", T(False), "ssh", {"partition"}) == "iptables"
    assert choose_backend("auto", T(False), "local", set()) == "none"
    with pytest.raises(BadInput, match="no backend"):
        choose_backend("auto", T(False), "local", {"partition"})
    with pytest.raises(BadInput, match="cannot do latency"):
        choose_backend("iptables", T(True), "docker", {"latency"})
    with pytest.raises(BadInput, match="supports_mesh is False"):
        choose_backend("proxy", T(False), "docker", {"partition"})
    with pytest.raises(BadInput, match="not available on --runtime local"):
        choose_backend("transparent", T(True), "local", {"partition"})
    with pytest.raises(BadInput, match="unknown backend"):
        choose_backend("netem", T(True), "local")

    class NoNat:
        name = "docker"
        capabilities = frozenset({"own-address"})
    with pytest.raises(BadInput, match="capability nat"):
        choose_backend("transparent", T(True), NoNat(), {"partition"})
    assert BACKENDS["transparent"].needs_net_admin and not BACKENDS["proxy"].needs_net_admin


def test_verify_checks_latency_and_bandwidth_toxics(mesh, server):
    api = ProxyClient(server.url)
    mesh.latency([("n1", "n2")], 50, 5)
    mesh.bandwidth([("n2", "n3")], 100)
    assert mesh.verify() == []
    api.delete_toxic("n1->n2:peer", "chaos-latency-upstream")  # one port lost its latency
    api.update_toxic("n2->n3", "chaos-bandwidth-downstream", {"rate": 999})
    problems = mesh.verify()
    assert any(p.startswith("n1->n2:peer: toxic chaos-latency-upstream") and "missing" in p
               for p in problems), problems
    assert any(p.startswith("n2->n3: toxic chaos-bandwidth-downstream") and "999" in p
               for p in problems), problems
    assert len(problems) == 2
    mesh.heal()
    assert mesh.verify() == []
