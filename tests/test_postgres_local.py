"""PostgresTarget on real etcd + Patroni + PostgreSQL processes (127.0.0.1, as user postgres).

Needs root and the Debian packages postgresql, patroni, etcd-server (skipped otherwise).
Each test starts its own 3-node cluster from the target's own services and tears it down.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from chaos.errors import SetupError
from targets.postgres import testing
from targets.postgres.setup import create_tables, wait_replicated, wait_streaming
from tests.runhelp import REPO, chaos

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(testing.available() is not None,
                                 reason=str(testing.available()))]


def _up(cluster: testing.LocalCluster) -> str:
    primary = wait_streaming(cluster.cluster(), timeout=120)
    create_tables(cluster.endpoints[primary])
    assert wait_replicated(cluster.cluster(), 30)
    return primary


def _statuses(cluster: testing.LocalCluster, skip: str | None = None) -> dict[str, dict]:
    out = {}
    for n in cluster.names:
        if n == skip:
            continue
        try:
            out[n] = cluster.target.status(n, cluster.endpoints, 2.0)
        except OSError:
            out[n] = {"role": "down"}
    return out


def _wait_new_primary(cluster: testing.LocalCluster, old: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [n for n, s in _statuses(cluster, skip=old).items() if s["role"] == "leader"]
        if leaders:
            return leaders[0]
        time.sleep(0.3)
    raise AssertionError(f"no new primary after killing {old}: {_statuses(cluster, old)}")


class _Writers:
    """Threads adding unique elements as fast as they can; remembers the acknowledged ones."""

    def __init__(self, cluster: testing.LocalCluster, n: int = 6):
        self.cluster = cluster
        self.acked: set[int] = set()
        self.outcomes: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def _run(self, i: int) -> None:
        client = self.cluster.target.client(self.cluster.endpoints, self.cluster.options)
        n = 0
        try:
            while not self._stop.is_set():
                value = i * 1_000_000 + n
                n += 1
                r = client.invoke({"f": "add", "key": "s", "value": value})
                with self._lock:
                    self.outcomes[r["type"]] = self.outcomes.get(r["type"], 0) + 1
                    if r["type"] == "ok":
                        self.acked.add(value)
                if r["type"] == "fail" and "connect failed" in str(r.get("error")):
                    time.sleep(0.05)
        finally:
            client.close()

    def __enter__(self) -> "_Writers":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def _final_reads(cluster: testing.LocalCluster) -> dict[str, set[int]]:
    client = cluster.target.client(cluster.endpoints, cluster.options)
    try:
        out = {}
        for n in cluster.names:
            r = client.invoke({"f": "read-set", "key": "s", "value": None, "node": n})
            assert r["type"] == "ok", (n, r)
            out[n] = set(r["value"])
        return out
    finally:
        client.close()


def _kill_primary_and_rejoin(cluster: testing.LocalCluster) -> tuple[set[int], dict]:
    """Writes at full speed, SIGKILL of the primary's node, failover, restart, rejoin."""
    primary = _up(cluster)
    before = cluster.target.status(primary, cluster.endpoints, 2.0)
    with _Writers(cluster) as writers:
        deadline = time.monotonic() + 30
        while len(writers.acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.1)
        cluster.kill(primary)
        left = subprocess.run(["pgrep", "-f", cluster.data_dir(primary)],
                              capture_output=True, text=True).stdout
        assert left == "", f"processes of the killed node survived: {left}"
        new = _wait_new_primary(cluster, primary)
        time.sleep(1.0)                 # some writes on the new primary
        cluster.start_node(primary, restart=True)
        acked_before_stop = len(writers.acked)
    assert acked_before_stop > 500, writers.outcomes
    wait_streaming(cluster.cluster(), timeout=120)          # the old primary rejoined
    assert wait_replicated(cluster.cluster(), 60)
    after = cluster.target.status(new, cluster.endpoints, 2.0)
    assert after["term"] > before["term"], (before, after)  # a promotion starts a timeline
    reads = _final_reads(cluster)
    assert len({frozenset(v) for v in reads.values()}) == 1, "replicas diverged after rejoin"
    return writers.acked - reads[new], {"outcomes": writers.outcomes, "new": new}


def test_cluster_up_register_ops_and_status():
    with testing.LocalCluster(3) as cluster:
        t0 = time.monotonic()
        primary = _up(cluster)
        statuses = _statuses(cluster)
        assert [n for n, s in statuses.items() if s["role"] == "leader"] == [primary]
        assert all(s["leader"] == primary and s["term"] == 1 for s in statuses.values())
        client = cluster.target.client(cluster.endpoints, cluster.options)
        try:
            assert client.invoke({"f": "read", "key": "k", "value": None})["value"] is None
            assert client.invoke({"f": "cas", "key": "k", "value": [None, 1]})["type"] == "ok"
            assert client.invoke({"f": "cas", "key": "k", "value": [None, 2]})["type"] == "fail"
            assert client.invoke({"f": "write", "key": "k", "value": 3})["node"] == primary
            assert client.invoke({"f": "cas", "key": "k", "value": [1, 4]})["type"] == "fail"
            assert client.invoke({"f": "cas", "key": "k", "value": [3, 5]})["type"] == "ok"
            assert client.invoke({"f": "read", "key": "k", "value": None})["value"] == 5
            standby = next(n for n in cluster.names if n != primary)
            wait_replicated(cluster.cluster(), 10)
            # a read routed to a standby reads its own copy
            r = client.invoke({"f": "read", "key": "k", "value": None, "node": standby})
            assert r == {"type": "ok", "node": standby, "value": 5}
        finally:
            client.close()
        assert time.monotonic() - t0 < 120


def test_async_kill_of_primary_fails_over_and_old_primary_rejoins():
    with testing.LocalCluster(3, {"synchronous_mode": "off"}) as cluster:
        lost, info = _kill_primary_and_rejoin(cluster)
        # asynchronous standbys: losing a few acknowledged adds is allowed (and usual at this
        # rate); the test asserts the mechanics, the chaos run tests assert the finding
        print(f"async kill: {len(lost)} acknowledged adds lost; {info}")


@pytest.mark.slow  # strict mode's safety is the docker cell's (tests/test_postgres_run.py) and
# the matrix's (benchmarks/bench_acceptance.py); this one repeats it on local processes
def test_strict_kill_of_primary_loses_no_acknowledged_write():
    with testing.LocalCluster(3, {"synchronous_mode": "strict"}) as cluster:
        lost, info = _kill_primary_and_rejoin(cluster)
        assert not lost, f"strict synchronous mode lost acknowledged adds: {sorted(lost)[:10]}"


def test_no_primary_is_a_setup_error_naming_each_node():
    cluster = testing.LocalCluster(3)
    try:
        cluster.start_node("n1")        # one etcd member of three: no quorum, no leader key
        with pytest.raises(SetupError) as err:
            wait_streaming(cluster.cluster(), timeout=3)   # never elects: no need to wait long
        text = str(err.value)
        assert "no primary" in text
        assert "n2: REST API did not answer" in text and "n3: REST API" in text
        assert "n1:" in text
    finally:
        cluster.close()
    left = subprocess.run(["pgrep", "-f", cluster.root], capture_output=True, text=True).stdout
    assert left == ""


def test_chaos_run_without_a_primary_is_exit_3_naming_each_node(tmp_path):
    """The whole `chaos run` path: a cluster that never elects a primary (no etcd quorum,
    tests/pg_no_quorum_target.py) is a setup error, exit 3, whose one message says what each
    node answered, and every process the run started is gone afterwards."""
    root = tempfile.mkdtemp(prefix="chaos-pg-noquorum-")
    os.chmod(root, 0o755)          # PostgreSQL runs as `postgres`: it must reach its data dir
    store = Path(root) / "store"
    try:
        proc = _run_no_quorum(store)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "no leader within 5 s" in proc.stderr, proc.stderr[-2000:]
    for node in ("n1", "n2", "n3"):
        assert f"{node}: " in proc.stderr, proc.stderr[-2000:]


def _run_no_quorum(store: Path) -> subprocess.CompletedProcess:
    proc = chaos("run", "--target", str(REPO / "tests" / "pg_no_quorum_target.py"),
                 "--runtime", "local", "--nemesis", "none", "--time-limit", "5",
                 "--store", str(store), "--quiet", timeout=120)
    left = subprocess.run(["pgrep", "-af", str(store)], capture_output=True, text=True).stdout
    assert left == "", f"left running after exit {proc.returncode}: {left}"
    return proc
