"""etcd through `chaos run`: short versions of one valid and one invalid cell of its matrix
(targets/etcd/matrix.py) on the docker runtime through the transparent mesh, kill and pause
on the local runtime (the faults that are honest there), and bad options.

The docker tests run whenever a Docker engine answers (the first one on a fresh machine
builds the etcd node image, about 2 minutes); each runs 12 s of load.
"""
from __future__ import annotations

import json
import shutil

import pytest

from targets.etcd.matrix import CELLS
from tests.runhelp import run_cell, anomaly_kinds, assert_stale_reads, chaos, run_json

SHORT = ["--runtime", "docker", "--time-limit", "12", "--nemesis-interval", "3",
         "--quiesce", "2"]


def _cell(tmp_path, name: str, seed: int) -> tuple[int, dict]:
    return run_cell(CELLS, name, tmp_path / "store", seed, defaults=tuple(SHORT))


@pytest.mark.docker
@pytest.mark.integration
def test_linearizable_reads_under_partition_are_valid(tmp_path):
    code, doc = _cell(tmp_path, "etcd linearizable, partition", 21)
    assert code == 0 and doc["valid"] is True, doc.get("reasons")
    assert doc["results"]["linearizable"]["valid"] is True
    # an old leader that has not heard of the new one: different terms, a warning at most
    dual = doc["results"]["dual-leaders"]
    assert dual["valid"] is True and not anomaly_kinds(doc, "dual-leaders")
    assert dual["stats"]["terms"] >= 2, "the partitions of the leader forced no election"


@pytest.mark.docker
@pytest.mark.integration
def test_members_removed_and_added_back_are_verified_and_the_run_valid(tmp_path):
    code, doc = _cell(tmp_path, "etcd linearizable, membership,partition", 23)
    assert code == 0 and doc["valid"] is True and not doc["unverified_faults"], doc
    ops = [json.loads(line) for line in open(doc["history"], encoding="utf-8")]
    done = {op["f"]: op for op in ops if op.get("f") in ("remove-member", "add-member")
            and op["type"] == "ok"}
    node = done["remove-member"]["value"]["node"]
    assert node not in done["remove-member"]["value"]["members"]
    back = done["add-member"]["value"]["nodes"][node]
    assert node in back["members"]
    assert back["caught_up"]["log_position"] >= back["caught_up"]["leader_position"] > 0


@pytest.mark.docker
@pytest.mark.integration
def test_serializable_reads_with_the_leader_cut_off_are_stale(tmp_path):
    code, doc = _cell(tmp_path, "etcd serializable, partition leader", 22)
    assert_stale_reads(code, doc)


@pytest.mark.parametrize("option,needle", [
    ("election_timeout_ms=300", "-O election_timeout_ms=300: etcd requires at least 5 times"),
    ("read_consistency=stale", "-O read_consistency=stale: must be one of"),
    ("endpoints=some", "-O endpoints=some"),
])
def test_bad_options_rejected_before_anything_starts(tmp_path, option, needle):
    proc = chaos("run", "--target", "etcd", "--runtime", "local", "-O", option,
                 "--store", str(tmp_path / "store"), timeout=60)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_local_runtime_refuses_network_faults_for_etcd(tmp_path):
    """No mesh can carry etcd's peer traffic locally: a partition is refused, not faked."""
    proc = chaos("run", "--target", "etcd", "--runtime", "local", "--nemesis", "partition",
                 "--time-limit", "12", "--nemesis-interval", "3",
                 "--store", str(tmp_path / "store"), timeout=60)
    assert proc.returncode == 4 and "supports_mesh is False" in proc.stderr, proc.stderr


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed (etcd-server)")
def test_local_kill_and_pause_are_valid(tmp_path):
    code, doc = run_json("--store", str(tmp_path / "store"), "--seed", "23", "--runtime",
                         "local", "--time-limit", "12", "--nemesis-interval", "3",
                         "--quiesce", "2", "--target", "etcd", "--op-timeout", "3",
                         "--nemesis", "kill,pause", timeout=300)
    assert code == 0 and doc["valid"] is True, doc.get("reasons")
    assert doc["results"]["linearizable"]["stats"]["ops"] > 100
