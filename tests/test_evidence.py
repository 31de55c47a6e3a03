"""Fault-effect evidence: a network fault that cannot touch the target's traffic is never
"valid"."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from chaos.net.evidence import Evidence, bypass_from_ss, scan_proc
from tests.conftest import REPO


class FakeNet:
    """traffic() from a dict (unit test of the evidence rules only)."""

    def __init__(self, counts):
        self.counts = counts

    def traffic(self):
        return None if self.counts is None else dict(self.counts)


def test_no_traffic_on_faulted_links_is_a_problem_naming_them():
    net = FakeNet({("n1", "n2"): 0, ("n2", "n1"): 0, ("n2", "n3"): 50})
    ev = Evidence(net)
    ev.begin("partition isolate-one", [("n1", "n2"), ("n2", "n1")])
    ev.end()
    problems = ev.problems()
    assert len(problems) == 1 and "n1->n2, n2->n1" in problems[0]
    assert "carried no traffic" in problems[0]


def test_one_used_direction_is_enough():
    net = FakeNet({("n1", "n2"): 0, ("n2", "n1"): 7})  # only n2 ever dials n1
    ev = Evidence(net)
    ev.begin("partition", [("n1", "n2"), ("n2", "n1")])
    ev.end()
    assert ev.problems() == []


def test_unmeasured_is_not_proven():
    ev = Evidence(FakeNet(None))
    ev.begin("latency", [("n1", "n2")])
    ev.end()
    assert len(ev.problems()) == 1 and "unmeasured" in ev.problems()[0]
    assert Evidence(FakeNet(None)).problems() == []  # no network fault: nothing to prove


def test_bypass_seen_by_a_scan_is_reported():
    ev = Evidence(FakeNet({("a", "b"): 5}), scan=lambda: ["a -> b (direct)"])
    ev.begin("partition", [("a", "b")])
    problems = ev.problems()
    assert len(problems) == 1 and "around the mesh" in problems[0] and "a -> b" in problems[0]


def test_ss_parsing_tells_proxied_from_direct():
    ips = {"n1": "10.0.0.2", "n2": "10.0.0.3"}
    out = ("0 0 10.0.0.2:40000 10.0.0.3:7000\n"     # n1 dialed n2's real main port: redirected
           "0 0 10.0.0.2:40001 10.0.0.3:9999\n"     # n1 -> n2 on a port no rule covers
           "0 0 [::ffff:10.0.0.2]:22 10.0.0.1:5000\n")  # the controller's ssh: not a node
    found = bypass_from_ss("n1", out, ips, {("10.0.0.3", 7000)})
    assert found == ["n1 <-> n2 (10.0.0.2:40001 - 10.0.0.3:9999)"]
    assert len(bypass_from_ss("n1", out, ips, set())) == 2  # explicit mesh: both are bypasses


HOLD = """
import socket, sys, time
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
if len(sys.argv) > 1:
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    print("connected", flush=True)
conns = []
while True:
    conn, _ = srv.accept()
    conns.append(conn)
"""


def test_scan_proc_sees_a_direct_connection_between_node_processes(tmp_path):
    dirs = {n: tmp_path / n for n in ("n1", "n2")}
    for d in dirs.values():
        d.mkdir()
    procs = []
    try:
        b = subprocess.Popen([sys.executable, "-c", HOLD], cwd=dirs["n2"], stdout=subprocess.PIPE,
                             text=True)
        procs.append(b)
        port_b = int(b.stdout.readline())
        proxy = socket.create_server(("127.0.0.1", 0))  # owned by no node: like a mesh proxy
        a = subprocess.Popen([sys.executable, "-c", HOLD, str(proxy.getsockname()[1])],
                             cwd=dirs["n1"], stdout=subprocess.PIPE, text=True)
        procs.append(a)
        a.stdout.readline()
        assert a.stdout.readline().strip() == "connected"
        assert scan_proc({n: str(d) for n, d in dirs.items()}) == []  # via the "proxy": fine
        direct = subprocess.Popen([sys.executable, "-c", HOLD, str(port_b)], cwd=dirs["n1"],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(direct)
        direct.stdout.readline()
        assert direct.stdout.readline().strip() == "connected"
        found = scan_proc({n: str(d) for n, d in dirs.items()})
        assert found and found[0].startswith("n1 -> n2") and f":{port_b}" in found[0]
        proxy.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _run(tmp_path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", "run", "--store", str(tmp_path / "store"), "--json",
         "--quiet", "--seed", "1", *args],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TOXIPROXY_URL": ""})
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON (exit {proc.returncode}): {proc.stderr[-2000:]}") from None
    return proc.returncode, out


@pytest.mark.integration
def test_a_bypassing_target_under_partition_is_unknown_naming_the_links(tmp_path):
    code, out = _run(tmp_path, "--target", str(REPO / "tests" / "bypass_target.py"),
                     "--nodes", "2", "--nemesis", "partition", "--partition-shape", "halves",
                     "--time-limit", "6", "--nemesis-interval", "2", "--concurrency", "2",
                     "--rate", "20")
    problems = out["unverified_faults"]
    assert code == 2 and out["valid"] == "unknown", out
    assert any("carried no traffic" in p and "n1->n2" in p and "n2->n1" in p for p in problems)
    assert any("around the mesh" in p and "n2 -> n1" in p for p in problems), problems


@pytest.mark.integration
def test_kvlite_under_partition_keeps_its_evidence(tmp_path):
    code, out = _run(tmp_path, "--target", "kvlite", "-O", "replication=quorum",
                     "-O", "failover=majority", "--nemesis", "partition,latency",
                     "--time-limit", "8", "--nemesis-interval", "2", "--rate", "50")
    assert out["unverified_faults"] == [], out["unverified_faults"]
    assert code in (0, 1), out  # a verdict on evidence, not unknown
