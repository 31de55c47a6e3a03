"""Redis + Sentinel through `chaos run`: short versions of the first and last cells of its
matrix (targets/redis/matrix.py) on the docker runtime through the transparent mesh, a kill
on the local runtime, the local runtime refusing partitions, and bad input (one line each,
the right exit code, nothing left running).

The docker tests run whenever a Docker engine answers (the first one on a fresh machine builds
the redis node image, about 2 minutes); the partition cell runs 16 s of load, the no-fault
cell 8 s.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys

import pytest

from targets.redis.matrix import CELLS, failover_s
from tests.runhelp import run_cell, REPO, anomaly_kinds, chaos, run_json

#: the partition must outlast Sentinel's failover (2-5 s): 7 s calm, 7 s fault
SHORT = ["--runtime", "docker", "--time-limit", "16", "--nemesis-interval", "7",
         "--quiesce", "2"]
HAVE_REDIS = shutil.which("redis-server") and shutil.which("redis-sentinel")


def _cell(tmp_path, name: str, seed: int, *more: str) -> tuple[int, dict]:
    return run_cell(CELLS, name, tmp_path / "store", seed, overrides=(*SHORT, *more))


@pytest.mark.docker
@pytest.mark.integration
def test_partition_isolating_the_master_loses_acknowledged_writes(tmp_path):
    code, doc = _cell(tmp_path, "redis defaults, partition master", 31)
    assert code == 1, doc.get("reasons")
    assert "lost-write" in anomaly_kinds(doc, "lost-writes")
    assert "split-brain-writes" in anomaly_kinds(doc, "dual-leaders")


@pytest.mark.docker
@pytest.mark.integration
def test_no_faults_is_valid(tmp_path):
    # no fault to outlast: SHORT's 16 s are for the partition cell's failover, not needed here
    code, doc = _cell(tmp_path, "redis defaults, none", 32, "--time-limit", "8")
    assert code == 0 and doc["valid"] is True, doc.get("reasons")
    assert doc["results"]["lost-writes"]["stats"]["acknowledged"] > 100


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_REDIS, reason="apt-get install redis-server redis-sentinel")
def test_local_kill_of_the_master_fails_over(tmp_path):
    code, doc = run_json("--store", str(tmp_path / "store"), "--seed", "33", "--runtime",
                         "local", "--target", "redis", "--workload", "set", "--nemesis", "kill",
                         "--time-limit", "16", "--nemesis-interval", "6", "--quiesce", "1",
                         timeout=300)
    assert code in (0, 1), doc.get("reasons")
    assert failover_s(doc["history"]) is not None, "no write acknowledged by a new master"
    # the acknowledged writes survive a kill of the master here: nothing was partitioned
    assert doc["results"]["lost-writes"]["stats"]["lost"] == 0


def test_local_runtime_refuses_partitions(tmp_path):
    """Sentinel finds peers by their real addresses, which no local mesh can carry."""
    proc = chaos("run", "--target", "redis", "--runtime", "local", "--nemesis", "partition",
                 "--time-limit", "12", "--nemesis-interval", "3",
                 "--store", str(tmp_path / "store"), timeout=60)
    assert proc.returncode == 4 and "supports_mesh is False" in proc.stderr, proc.stderr


@pytest.mark.parametrize("option,needle", [
    ("quorum=100", "-O quorum=100: must be <= 99"),
    ("down_after_ms=10", "-O down_after_ms=10: must be >= 100"),
    ("read_from=leader", "-O read_from=leader: must be one of master, replica, any"),
    ("quorum=4", "-O quorum=4: at most the number of Sentinels (3 nodes)"),   # check_cluster
    ("wait_replicas=3", "-O wait_replicas=3: at most the number of replicas"),
])
def test_bad_options_rejected_before_anything_starts(tmp_path, option, needle):
    proc = chaos("run", "--target", "redis", "--runtime", "local", "--nemesis", "none",
                 "-O", option, "--store", str(tmp_path / "store"), timeout=60)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def _run_with_path(tmp_path, path: str, *args: str):
    import subprocess

    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "chaos", "run", "--target", "redis",
                           "--runtime", "local", "--nemesis", "none", "--time-limit", "5",
                           "--quiet", "--store", str(tmp_path / "store"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_missing_redis_server_on_the_local_runtime_names_the_package(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = _run_with_path(tmp_path, str(empty))
    assert proc.returncode == 3, proc.stderr
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("chaos: error")]
    assert len(err) == 1 and "redis-server (package redis-server)" in err[0], proc.stderr


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_REDIS, reason="apt-get install redis-server redis-sentinel")
def test_a_node_that_never_becomes_ready_is_one_setup_error_and_nothing_is_left(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    pids = tmp_path / "pids"
    fake = shim / "redis-server"           # starts, never listens
    fake.write_text(f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 3600\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (shim / "redis-sentinel").symlink_to(shutil.which("redis-sentinel"))
    proc = _run_with_path(tmp_path, f"{shim}{os.pathsep}{os.environ['PATH']}",
                          "-O", "ready_timeout=2")
    assert proc.returncode == 3, proc.stderr
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("chaos: error")]
    assert len(err) == 1 and "service redis not accepting connections" in err[0], proc.stderr
    started = [int(p) for p in pids.read_text().split()]
    assert started
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
