"""Final ops (chaos.final) against the tiny TCP key-value server of the workload tests: one
read per key per node, nodes read side by side, and a node that stopped answering skipped
after a few keys, its missing reads recorded (fail, "not sent") and named by the evidence
rules once, with how many keys."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

import workloads
from chaos.checkers.evidence import final_read_gaps
from chaos.final import SKIP_AFTER, TRIES
from chaos.history.reader import read_history
from chaos.history.writer import HistoryWriter
from chaos.recorder import Recorder
from chaos.target import Addr
from chaos.workload import WorkloadRunner
from test_recorder import validate_history
from test_workload_support import KVServer, KVTarget, serving

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[KVServer]:
    with serving() as srv:
        yield srv


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connects are refused


def _seed_keys(rec: Recorder, keys: list[str]) -> None:
    """Client ops on `keys`, as the load would have recorded them."""
    src = rec.local("load")
    for i, k in enumerate(keys):
        src.record({"process": i, "type": "invoke", "f": "add", "key": k, "value": i})
        src.record({"process": i, "type": "ok", "f": "add", "key": k, "value": i})


def test_a_dead_node_is_skipped_after_a_few_keys_and_named_once(server: KVServer,
                                                                tmp_path: Path) -> None:
    host, port = server.server_address[:2]
    nodes = {"n1": Addr(host, port), "n2": Addr("127.0.0.1", _closed_port())}
    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), time.monotonic_ns())
    keys = [f"s{i}" for i in range(40)]
    _seed_keys(rec, keys)
    runner = WorkloadRunner(KVTarget(), nodes, {}, workloads.get("set"), rec,
                            concurrency=1, rate=None, seed=1, workers=1, op_timeout=2)
    seen: list[tuple[int, int]] = []
    t0 = time.monotonic()
    finals = runner.run_final(["n1", "n2"], quiesce_s=0, progress=lambda d, t: seen.append((d, t)))
    took = time.monotonic() - t0
    rec.close()
    assert took < 10  # not TRIES attempts for each of n2's 40 keys
    assert [(o["key"], o["node"]) for o in finals] == [(k, n) for k in keys for n in nodes]
    assert all(o["type"] == "ok" for o in finals if o["node"] == "n1")
    n2 = [o for o in finals if o["node"] == "n2"]
    assert all(o["type"] != "ok" for o in n2)
    not_sent = [o for o in n2 if o["type"] == "fail" and o["error"].startswith("not sent")]
    assert len(not_sent) == len(keys) - SKIP_AFTER and "n2" in not_sent[0]["error"]
    assert seen[-1] == (len(finals), len(finals))
    ops = validate_history(tmp_path / "history.jsonl")
    n2_invokes = [o for o in ops if o.get("final") and o["type"] == "invoke"
                  and o.get("node") == "n2"]
    assert len(n2_invokes) == SKIP_AFTER * TRIES + len(not_sent)
    gaps = final_read_gaps(read_history(tmp_path / "history.jsonl").pairs)
    assert len(gaps) == 1 and "40 keys" in gaps[0] and "on n2" in gaps[0], gaps
    assert "'s0'" in gaps[0] and "'s39'" not in gaps[0]  # the first few are named


def test_a_node_that_answers_again_is_not_skipped(server: KVServer, tmp_path: Path) -> None:
    """An op retried until ok (a new process id after info); a node answering again is not
    skipped: every key is read."""
    host, port = server.server_address[:2]

    class Flaky(KVTarget):
        calls = 0

        def client(self, nodes, options):  # type: ignore[no-untyped-def]
            Flaky.calls += 1
            if Flaky.calls in (1, 2):  # the first two tries of the first op cannot connect
                raise ConnectionRefusedError("refused")
            return super().client(nodes, options)

    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), time.monotonic_ns())
    keys = [f"s{i}" for i in range(5)]
    _seed_keys(rec, keys)
    runner = WorkloadRunner(Flaky(), {"n1": Addr(host, port)}, {}, workloads.get("set"), rec,
                            concurrency=1, rate=None, seed=1, workers=1, op_timeout=2)
    finals = runner.run_final(["n1"], quiesce_s=0, keep_values=False)
    rec.close()
    assert [o["key"] for o in finals] == keys and all(o["type"] == "ok" for o in finals)
    assert not any("value" in o for o in finals)  # not kept in memory: the history has them
    ops = validate_history(tmp_path / "history.jsonl")
    s0 = [o for o in ops if o.get("final") and o["key"] == "s0" and o["type"] != "invoke"]
    assert [o["type"] for o in s0] == ["info", "info", "ok"]
    assert len({o["process"] for o in s0}) == 3
