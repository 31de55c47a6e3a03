"""The kvlite acceptance matrix (DESIGN §6), end to end on the local runtime.

Each cell is a real `chaos run` subprocess: kvlite nodes as processes, the embedded Toxiproxy
mesh, worker processes, the monitor, a seeded fault schedule, then the checkers. Unsafe
configurations must be caught; the safe one must pass under every fault.
"""
from __future__ import annotations

import pytest

from tests.runhelp import anomaly_kinds, run_json

pytestmark = pytest.mark.integration

COMMON = ["--time-limit", "15", "--nemesis-interval", "3", "--seed", "11", "--quiesce", "2"]


def _run(tmp_path, *args):
    return run_json("--store", str(tmp_path / "store"), *COMMON, *args)


@pytest.mark.parametrize("nemesis", ["partition", "kill"])
def test_async_naive_loses_writes_and_splits_brain(tmp_path, nemesis):
    code, doc = _run(tmp_path, "--workload", "set", "--nemesis", nemesis,
                     "-O", "replication=async", "-O", "failover=naive")
    assert code == 1, doc
    assert "lost-write" in anomaly_kinds(doc, "lost-writes")
    assert anomaly_kinds(doc, "dual-leaders") & {"same-term-leaders", "split-brain-writes"}


def test_async_reads_from_any_node_are_stale_under_latency(tmp_path):
    code, doc = _run(tmp_path, "--workload", "register", "--nemesis", "latency",
                     "-O", "replication=async", "-O", "read_from=any")
    assert code == 1, doc
    assert "stale-read" in anomaly_kinds(doc, "stale-reads")


@pytest.mark.parametrize("nemesis", ["partition", "kill", "pause", "latency"])
def test_quorum_majority_leader_reads_are_valid(tmp_path, nemesis):
    code, doc = _run(tmp_path, "--workload", "register", "--nemesis", nemesis,
                     "-O", "replication=quorum", "-O", "failover=majority", "-O", "read_from=leader")
    assert code == 0, doc
    assert doc["valid"] is True
    assert not doc["unverified_faults"]
