"""`--client-placement node`: each client reaches only what its node reaches in a partition."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runhelp import run_json

pytestmark = pytest.mark.integration


def test_placed_clients_are_cut_with_their_node(tmp_path):
    code, doc = run_json("--store", str(tmp_path / "store"), "--client-placement", "node",
                         "--nemesis", "partition", "--partition-shape", "halves",
                         "--time-limit", "6", "--nemesis-interval", "2", "--seed", "2",
                         "--concurrency", "3", "--rate", "60", "-O", "replication=quorum",
                         "-O", "failover=majority")
    assert doc["unverified_faults"] == [] and code in (0, 1), doc
    ops = [json.loads(l) for l in (Path(doc["run_dir"]) / "history.jsonl").read_text().splitlines()]
    start = next(o for o in ops if o["f"] == "start-partition" and o["type"] == "ok")
    assert start["value"]["verified"] is True
    cut = {tuple(l) for l in start["value"]["did"]["clients_cut"]}
    # halves of n1..n3: [n1] | [n2, n3]
    assert cut == {("client@n1", "n2"), ("client@n1", "n3"), ("client@n2", "n1"),
                   ("client@n3", "n1")}
    config = json.loads((Path(doc["run_dir"]) / "config.json").read_text())["config"]
    assert config["client_placement"] == "node"


def test_client_placement_needs_a_mesh(tmp_path):
    from tests.runhelp import chaos

    proc = chaos("run", "--store", str(tmp_path / "s"), "--client-placement", "node",
                 "--nemesis", "partition", "--net", "none", "--time-limit", "4",
                 "--nemesis-interval", "1")
    assert proc.returncode == 4 and "--net none cannot do" in proc.stderr, proc.stderr
