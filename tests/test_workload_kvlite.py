"""The workload runner against a real 3-node kvlite cluster (processes on 127.0.0.1), no faults:
the clients find the leader, the history is complete, and nothing acknowledged is missing."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

import workloads
from chaos.history.writer import HistoryWriter
from chaos.recorder import Recorder
from chaos.target import Addr
from chaos.workload import WorkloadRunner
from test_recorder import validate_history

kvlite_testing = pytest.importorskip("targets.kvlite.testing")
from targets.kvlite.plugin import KvliteTarget  # noqa: E402

REF = "targets.kvlite.plugin:KvliteTarget"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with kvlite_testing.Cluster(tmp_path_factory.mktemp("kvlite"), n=3,
                                options={"replication": "sync", "failover": "naive"}) as c:
        deadline = time.monotonic() + 10
        while not c.leaders() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield c


def _addrs(c: object) -> dict[str, Addr]:
    return {n: Addr(h, p) for n, (h, p) in c.addrs().items()}  # type: ignore[attr-defined]


def _run(c: object, tmp_path: Path, name: str, seconds: float, **kw: object
         ) -> tuple[WorkloadRunner, Recorder, list[dict]]:
    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), time.monotonic_ns())
    runner = WorkloadRunner(KvliteTarget(), _addrs(c), {"timeout": 2.0}, workloads.get(name),
                            rec, concurrency=6, rate=None, seed=11, workers=2, op_timeout=3.0,
                            target_ref=REF, **kw)  # type: ignore[arg-type]
    try:
        runner.start()
        time.sleep(seconds)  # load for a while, on purpose
        runner.stop(timeout=5)
        finals = runner.run_final(list(_addrs(c)), quiesce_s=0.2)
    finally:
        runner.stop()
        rec.close()
    return runner, rec, finals


def test_register_on_kvlite(cluster: object, tmp_path: Path) -> None:
    _, rec, finals = _run(cluster, tmp_path, "register", 1.5)
    assert finals == []
    ops = validate_history(tmp_path / "history.jsonl")
    oks = [o for o in ops if o["type"] == "ok"]
    assert len(oks) > 100 and rec.stats().lost_sources == []
    written = {o["value"] for o in ops if o["f"] == "write" and o["type"] == "invoke"}
    written |= {o["value"][1] for o in ops if o["f"] == "cas" and o["type"] == "invoke"}
    assert all(o["value"] is None or o["value"] in written for o in oks if o["f"] == "read")
    assert all(o.get("node") in ("n1", "n2", "n3") for o in oks)


def test_set_on_kvlite_loses_nothing_without_faults(cluster: object, tmp_path: Path) -> None:
    _, rec, finals = _run(cluster, tmp_path, "set", 1.5)
    ops = validate_history(tmp_path / "history.jsonl")
    added = {o["value"] for o in ops if o["f"] == "add" and o["type"] == "ok"}
    assert len(added) > 50
    keys = {o["key"] for o in ops if o["f"] == "add"}
    assert len(finals) == 3 * len(keys) and all(o["type"] == "ok" and o["final"] for o in finals)
    for key in keys:  # every key's final read on every node holds exactly the key's adds
        mine = {o["value"] for o in ops if o["f"] == "add" and o["type"] == "ok"
                and o["key"] == key}
        assert all(set(o["value"]) == mine for o in finals if o["key"] == key)


def test_final_reads_are_served_by_each_node(cluster: object, tmp_path: Path) -> None:
    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), time.monotonic_ns())
    runner = WorkloadRunner(KvliteTarget(), _addrs(cluster), {"timeout": 2.0},
                            workloads.get("set"), rec, concurrency=1, rate=None, seed=1,
                            workers=1, op_timeout=3.0, target_ref=REF)
    try:
        finals = runner.run_final(["n1", "n2", "n3"], quiesce_s=0)
    finally:
        rec.close()
    assert [o.get("node") for o in finals] == ["n1", "n2", "n3"]
