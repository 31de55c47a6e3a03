"""The fault registry and the nemesis facade (logic only: a recording runtime stands in)."""
from __future__ import annotations

import random

import pytest

from chaos.errors import BadInput
from chaos.faults import FAULTS, Fault, get, needs_of, register
from chaos.faults.shapes import SHAPES, cut_pairs
from chaos.nemesis import Nemesis, NemesisContext
from chaos.schedule import KINDS, FaultSpec, make_schedule, parse_nemeses


class Runtime:
    """Records calls; processes "die" on kill and "stop" on pause."""

    def __init__(self):
        self.calls = []
        self.down, self.stopped = set(), set()

    def kill(self, node, service=None):
        self.calls.append(("kill", node, service))
        self.down.add((node, service))

    def pause(self, node, service=None):
        self.calls.append(("pause", node, service))
        self.stopped.add((node, service))

    def resume(self, node, service=None):
        self.calls.append(("resume", node, service))
        self.stopped.discard((node, service))

    def is_running(self, node, service=None):
        return (node, service) not in self.down

    def is_paused(self, node, service=None):
        return (node, service) in self.stopped


def nemesis(rt, restart=None):
    ops = []

    def back(node, service=None):
        rt.down.discard((node, service))
    ctx = NemesisContext(runtime=rt, net=None, nodes=["n1", "n2", "n3"], leader=lambda: "n2",
                         restart=restart or back, rng=random.Random(1), record=ops.append)
    return Nemesis(ctx), ops


def test_kill_one_service_and_restart_it():
    rt = Runtime()
    nem, ops = nemesis(rt)
    nem.start(FaultSpec("kill", 1, 2, {"node": "leader", "service": "sentinel"}))
    assert rt.calls == [("kill", "n2", "sentinel")] and nem.killed == {"n2"}
    assert ops[-1]["type"] == "ok" and ops[-1]["value"]["service"] == "sentinel"
    nem.stop(FaultSpec("kill", 1, 2, {}))
    assert nem.killed == set() and ops[-1]["f"] == "restart" and ops[-1]["type"] == "ok"
    assert nem.unverified == []


def test_a_kill_that_does_not_kill_is_unverified():
    rt = Runtime()
    rt.kill = lambda node, service=None: None  # the process survives
    nem, ops = nemesis(rt)
    nem.start(FaultSpec("kill", 1, 2, {"node": "n1"}))
    assert ops[-1]["type"] == "info" and "still running" in nem.unverified[0]


def test_heal_all_resumes_then_restarts_and_records_once():
    rt = Runtime()
    order = []
    nem, ops = nemesis(rt, restart=lambda node, service=None: order.append(("restart", node)))
    nem.start(FaultSpec("kill", 1, 2, {"node": "n1"}))
    nem.start(FaultSpec("pause", 1, 2, {"node": "n3"}))
    rt.down.clear()
    rt.resume = lambda node, service=None: (order.append(("resume", node)),
                                            rt.stopped.discard((node, service)))
    nem.heal_all()
    assert order == [("resume", "n3"), ("restart", "n1")]
    heal = [o for o in ops if o["f"] == "heal"]
    assert [o["type"] for o in heal] == ["invoke", "ok"]
    assert heal[1]["value"]["resumed"] == ["n3"] and heal[1]["value"]["restarted"] == ["n1"]


def test_network_faults_without_a_backend_are_reported_not_ignored():
    nem, ops = nemesis(Runtime())
    nem.start(FaultSpec("partition", 1, 2, {"shape": "halves"}))
    assert ops[-1]["type"] == "info" and "network backend" in nem.unverified[0]


def test_a_new_fault_is_one_registered_object():
    class Noop(Fault):
        kind, start_op, stop_op = "test-noop", "start-noop", "stop-noop"
        in_all = False

        def start(self, nem, params):
            return {"did": params["x"]}, []

        def stop(self, nem, params):
            return {}, ["it did not stop"]

    register(Noop())
    try:
        assert parse_nemeses("test-noop") == ["test-noop"] and "test-noop" not in KINDS
        nem, ops = nemesis(Runtime())
        nem.start(FaultSpec("test-noop", 0, 1, {"x": 1}))
        nem.stop(FaultSpec("test-noop", 0, 1, {}))
        assert [o["f"] for o in ops] == ["start-noop"] * 2 + ["stop-noop"] * 2
        assert nem.unverified == ["stop-noop not verified: it did not stop"]
        with pytest.raises(ValueError):
            register(Noop())
    finally:
        del FAULTS["test-noop"]


def test_registry_and_schedule():
    assert KINDS == ("partition", "latency", "kill", "pause")  # --nemesis all, seeded order
    assert "bandwidth" in FAULTS and not FAULTS["bandwidth"].in_all
    assert needs_of(["partition", "latency", "kill"]) == {"partition", "latency"}
    with pytest.raises(BadInput, match="unknown fault kind"):
        get("flood")
    s = make_schedule(["bandwidth"], interval=1, time_limit=4, seed=1, bandwidth_kb=7)
    assert [f.params for f in s] == [{"rate_kb": 7}, {"rate_kb": 7}]
    assert SHAPES[0] == "isolate-leader"
    assert cut_pairs(["a", "b", "c"], [["a"], ["b", "c"]]) == {("a", "b"), ("a", "c"),
                                                               ("b", "a"), ("c", "a")}


def test_partition_faults_on_a_real_mesh_feed_the_evidence(server):
    from chaos.net.client import ProxyClient
    from chaos.net.echo import EchoServer
    from chaos.net.evidence import Evidence
    from chaos.net.mesh import Mesh
    from tests.test_mesh import talks

    echoes = {n: EchoServer() for n in ("n1", "n2", "n3")}
    mesh = Mesh(ProxyClient(server.url), {n: e.addr for n, e in echoes.items()})
    mesh.setup()
    try:
        evidence = Evidence(mesh)
        nem, ops = nemesis(Runtime())
        nem.ctx.net, nem.ctx.evidence = mesh, evidence
        nem.start(FaultSpec("partition", 0, 1, {"one_way": ["n1", "n2"]}))
        assert ops[-1]["type"] == "ok" and ops[-1]["value"]["did"]["one_way"] is True
        assert not talks(mesh.peer_addr("n1", "n2"), timeout=0.3)
        assert talks(mesh.peer_addr("n1", "n3"))  # n1 -> n3 carried bytes, not n1 <-> n2
        nem.stop(FaultSpec("partition", 0, 1, {}))
        nem.start(FaultSpec("latency", 1, 2, {"ms": 1, "jitter_ms": 0}))
        nem.stop(FaultSpec("latency", 1, 2, {}))
        nem.heal_all()
        assert [w.what for w in evidence.windows] == ["one-way cut", "latency"]
        # the one-way cut's links n1<->n2 carried only the (dropped) probe bytes of n1
        assert nem.unverified == [], nem.unverified
        heal = [o for o in ops if o["f"] == "heal" and o["type"] == "ok"][0]
        assert [e["fault"] for e in heal["value"]["evidence"]] == ["one-way cut", "latency"]
    finally:
        mesh.teardown()
        for e in echoes.values():
            e.close()


def test_a_partition_of_idle_links_is_unverified(server):
    from chaos.net.client import ProxyClient
    from chaos.net.echo import EchoServer
    from chaos.net.evidence import Evidence
    from chaos.net.mesh import Mesh

    echoes = {n: EchoServer() for n in ("n1", "n2")}
    mesh = Mesh(ProxyClient(server.url), {n: e.addr for n, e in echoes.items()})
    mesh.setup()
    try:
        nem, ops = nemesis(Runtime())
        nem.ctx.nodes = ["n1", "n2"]
        nem.ctx.net, nem.ctx.evidence = mesh, Evidence(mesh)
        nem.start(FaultSpec("partition", 0, 1, {"shape": "halves"}))
        nem.stop(FaultSpec("partition", 0, 1, {}))
        nem.heal_all()
        assert len(nem.unverified) == 1 and "carried no traffic" in nem.unverified[0]
        assert ops[-1]["f"] == "fault-evidence" and ops[-1]["type"] == "info"
    finally:
        mesh.teardown()
        for e in echoes.values():
            e.close()
