"""The workload runner against a real (tiny) TCP key-value server run by the test, with clients
in spawned worker processes: history shape, Jepsen process semantics (info retires a process,
timeouts), rate limiting, final reads, reproducibility, and the process lifecycle (parent
death, Ctrl-C)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import workloads
from chaos.errors import BadInput
from chaos.history.writer import HistoryWriter
from chaos.recorder import Recorder
from chaos.target import Addr
from chaos.workload import WorkloadRunner, completion_of
from test_recorder import validate_history
from tests.conftest import wait_for
from test_workload_support import KVServer, KVTarget, NoopTarget, serving

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[KVServer]:
    with serving() as srv:
        yield srv


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), time.monotonic_ns())
    yield rec
    rec.close(timeout=1.0)


def addrs(srv: KVServer, names: tuple[str, ...] = ("n1",)) -> dict[str, Addr]:
    host, port = srv.server_address[:2]
    return {n: Addr(host, port) for n in names}


def run_for(runner: WorkloadRunner, seconds: float) -> None:
    runner.start()
    try:
        time.sleep(seconds)  # load for a while, on purpose
    finally:
        runner.stop(timeout=5)


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.integration
def test_register_history_is_complete_and_consistent(server: KVServer, recorder: Recorder,
                                                     tmp_path: Path) -> None:
    runner = WorkloadRunner(KVTarget(), addrs(server), {}, workloads.get("register"), recorder,
                            concurrency=6, rate=None, seed=7, workers=2, op_timeout=5)
    run_for(runner, 1.5)
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    client = [o for o in ops if o["type"] != "invoke"]
    assert len(client) > 200
    assert {o["process"] for o in ops} == set(range(6))  # nothing failed: no retired ids
    written = {o["value"] for o in ops if o["f"] == "write" and o["type"] == "invoke"}
    written |= {o["value"][1] for o in ops if o["f"] == "cas" and o["type"] == "invoke"}
    reads = [o["value"] for o in client if o["f"] == "read" and o["type"] == "ok"]
    assert reads and all(v is None or v in written for v in reads)
    assert all(o.get("node") == "n1" for o in client)
    values = [o["value"] for o in ops if o["f"] == "write" and o["type"] == "invoke"]
    assert len(values) == len(set(values)), "write values repeat"
    assert recorder.stats().lost_sources == [] and recorder.stats().late == 0


@pytest.mark.integration
def test_exception_is_info_and_retires_the_process(server: KVServer, recorder: Recorder,
                                                   tmp_path: Path) -> None:
    runner = WorkloadRunner(KVTarget(), addrs(server), {"raise_every": 5},
                            workloads.get("register"), recorder,
                            concurrency=3, rate=None, seed=1, workers=1, op_timeout=5)
    run_for(runner, 0.8)
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    infos = [o for o in ops if o["type"] == "info"]
    assert infos
    assert all(o["error"].startswith("indeterminate: ConnectionResetError") for o in infos)
    for info in infos:  # the retired id never invokes again
        later = [o for o in ops if o["index"] > info["index"] and o["process"] == info["process"]]
        assert later == []
    # id + concurrency carries on: every id beyond the first three is the successor of an id
    # that ended with info (the last info may come right before stop, with no successor yet)
    retired = {o["process"] for o in infos}
    ids = {o["process"] for o in ops}
    assert ids - {0, 1, 2}, "no process was ever replaced"
    assert all(p - 3 in retired for p in ids - {0, 1, 2})


@pytest.mark.integration
def test_timeout_is_info_and_the_slot_continues(server: KVServer, recorder: Recorder,
                                                tmp_path: Path) -> None:
    runner = WorkloadRunner(KVTarget(), addrs(server), {"hang_every": 4},
                            workloads.get("register"), recorder,
                            concurrency=2, rate=None, seed=1, workers=1, op_timeout=0.3)
    t = time.monotonic()
    run_for(runner, 1.2)
    assert time.monotonic() - t < 10, "stop waited for hung calls"
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    timeouts = [o for o in ops if o.get("error") == "indeterminate: timeout after 0.3 s"]
    assert len(timeouts) >= 2
    inv = {o["process"]: o for o in ops if o["type"] == "invoke"}
    for o in timeouts:
        lag = o["time"] - max(i["time"] for i in ops
                              if i["process"] == o["process"] and i["type"] == "invoke")
        assert 0.3e9 <= lag < 2e9
    assert max(inv) >= 4  # replacement processes ran


@pytest.mark.integration
def test_rate_limits_total_throughput(recorder: Recorder, tmp_path: Path) -> None:
    runner = WorkloadRunner(NoopTarget(), {}, {}, workloads.get("register"), recorder,
                            concurrency=4, rate=100.0, seed=3, workers=2, op_timeout=5)
    runner.start()
    t0 = recorder.now()
    time.sleep(2.0)  # the measurement window: invokes counted over 2 s
    runner.stop()
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    n = sum(1 for o in ops if o["type"] == "invoke" and t0 <= o["time"] <= t0 + 2e9)
    assert 100 <= n <= 300, f"{n} invokes in 2 s at rate 100/s"


@pytest.mark.integration
def test_unlimited_rate_is_much_faster(recorder: Recorder, tmp_path: Path) -> None:
    runner = WorkloadRunner(NoopTarget(), {}, {}, workloads.get("set"), recorder,
                            concurrency=4, rate=None, seed=3, workers=2, op_timeout=5)
    run_for(runner, 1.0)
    assert recorder.stats().ok > 1000


@pytest.mark.integration
def test_set_final_reads_hit_every_node(server: KVServer, recorder: Recorder,
                                        tmp_path: Path) -> None:
    names = ("n1", "n2", "n3")
    runner = WorkloadRunner(KVTarget(), addrs(server, names), {}, workloads.get("set"), recorder,
                            concurrency=4, rate=None, seed=5, workers=2, op_timeout=5)
    run_for(runner, 1.0)
    finals = runner.run_final(list(names), quiesce_s=0.05)
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    # every key the run's ops used, adds and reads alike (a slot may read the key it is about
    # to fill before any add to it is recorded: that key is read at the end too)
    keys = list(dict.fromkeys(o["key"] for o in ops if "key" in o and not o.get("final")))
    assert len({o["key"] for o in ops if o["f"] == "add"}) > 3  # 1 s fills several keys
    # one read per key per node, key-major, in the order of the ops
    assert [(o["key"], o["node"]) for o in finals] == [(k, n) for k in keys for n in names]
    assert all(o["type"] == "ok" and o["final"] for o in finals)
    final_lines = [o for o in ops if o.get("final")]
    assert len(final_lines) == 2 * len(finals) and all(o["f"] == "read-set"
                                                       for o in final_lines)
    assert len({o["process"] for o in final_lines}) == len(finals)  # a fresh id per op
    assert min(o["process"] for o in final_lines) > max(
        o["process"] for o in ops if not o.get("final"))
    for key in keys:
        added = {o["value"] for o in ops if o["f"] == "add" and o["type"] == "ok"
                 and o["key"] == key}
        assert 0 < len(added) <= 256
        assert all(set(o["value"]) == added for o in finals if o["key"] == key)


@pytest.mark.integration
def test_same_seed_same_per_process_ops(server: KVServer, tmp_path: Path) -> None:
    def run(i: int) -> dict[int, list[tuple[Any, ...]]]:
        rec = Recorder(HistoryWriter(tmp_path / f"h{i}.jsonl"), time.monotonic_ns())
        runner = WorkloadRunner(KVTarget(), addrs(server), {}, workloads.get("register"), rec,
                                concurrency=3, rate=300.0, seed=42, workers=2, op_timeout=5)
        run_for(runner, 0.6)
        rec.close()
        seqs: dict[int, list[tuple[Any, ...]]] = {}
        for o in validate_history(tmp_path / f"h{i}.jsonl"):
            if o["type"] == "invoke":
                v = o["value"][1] if o["f"] == "cas" else o["value"]
                seqs.setdefault(o["process"], []).append((o["f"], o["key"], v))
        return seqs

    a, b = run(1), run(2)
    assert set(a) == set(b)
    for p in a:
        n = min(len(a[p]), len(b[p]))
        assert n > 5 and a[p][:n] == b[p][:n]


def test_bad_numbers_are_bad_input(recorder: Recorder) -> None:
    w = workloads.get("register")
    with pytest.raises(BadInput, match="concurrency"):
        WorkloadRunner(NoopTarget(), {}, {}, w, recorder, concurrency=0, rate=None, seed=1)
    with pytest.raises(BadInput, match="rate"):
        WorkloadRunner(NoopTarget(), {}, {}, w, recorder, concurrency=1, rate=0.0, seed=1)
    with pytest.raises(BadInput, match="known: register, set"):
        workloads.get("bank")
    with pytest.raises(BadInput, match="keys"):
        workloads.get("register", {"keys": 0})


def test_completion_of_fills_values_and_flags_bad_types() -> None:
    inv = {"process": 1, "type": "invoke", "f": "write", "key": "k", "value": 9, "final": True}
    assert completion_of(inv, {"type": "ok", "node": "n2", "meta": {"term": 3}}, None) == {
        "process": 1, "type": "ok", "f": "write", "key": "k", "value": 9, "node": "n2",
        "meta": {"term": 3}, "final": True}
    bad = completion_of(inv, {"type": "maybe"}, None)
    assert bad["type"] == "info" and "maybe" in bad["error"]
    rd = completion_of({"process": 2, "f": "read", "key": "k", "value": None},
                       None, OSError("down"))
    assert rd["type"] == "info" and rd["value"] is None and rd["error"].startswith("indeterminate")


def test_workload_definitions() -> None:
    reg, st = workloads.get("register"), workloads.get("set")
    assert reg.checkers == ["stale-reads", "linearizable", "perf", "dual-leaders"]
    assert st.checkers == ["lost-writes", "perf", "dual-leaders"]
    assert reg.final_ops(["n1", "n2"], ["k1"]) == [] and not reg.takes_final_ops
    assert st.takes_final_ops
    # the first key always, then every key the run used; key-major, one read per node
    assert st.final_ops(["n1", "n2"], ["s1"]) == [
        {"f": "read-set", "key": "s0", "value": None, "node": "n1", "final": True},
        {"f": "read-set", "key": "s0", "value": None, "node": "n2", "final": True},
        {"f": "read-set", "key": "s1", "value": None, "node": "n1", "final": True},
        {"f": "read-set", "key": "s1", "value": None, "node": "n2", "final": True}]
    import random
    rng = random.Random(0)
    fs = [st.generator(rng, 3, 8)["f"] for _ in range(2000)]
    assert 100 < fs.count("read-set") < 320  # ~10 %
    adds = [st.generator(rng, 4, 8)["value"] for _ in range(500)]
    adds = [a for a in adds if a is not None]
    assert len(adds) == len(set(adds)) and all(4_000_000 <= a < 5_000_000 for a in adds)
    ops = [reg.generator(rng, 2, 8) for _ in range(3000)]
    assert {o["f"] for o in ops} == {"read", "write", "cas"}
    assert any(o["f"] == "cas" and o["value"][0] is not None for o in ops)


def test_set_keys_rotate_with_a_bounded_number_of_adds() -> None:
    """Each key takes at most adds_per_key adds (quota per slot = adds_per_key // slots); a
    read reads the key its slot fills; a retired process's successor continues its slot's
    key sequence with fresh elements; per-slot state stays bounded by the concurrency."""
    import random
    from collections import Counter
    slots = 4
    st = workloads.get("set", {"adds_per_key": 40, "read_fraction": 0.2})
    procs = list(range(slots))
    rngs = {p: random.Random(p) for p in procs}
    per_key: Counter[str] = Counter()
    elements: list[int] = []
    current: dict[int, str] = {}
    for step in range(4000):
        slot = step % slots
        p = procs[slot]
        op = st.generator(rngs[p], p, slots)
        if op["f"] == "add":
            per_key[op["key"]] += 1
            elements.append(op["value"])
        else:
            assert op["f"] == "read-set"
        if slot in current:  # keys only move forward, one at a time
            assert int(op["key"][1:]) - int(current[slot][1:]) in (0, 1)
        current[slot] = op["key"]
        if step % 997 == 0:  # retire: the successor id keeps the slot
            procs[slot] = p + slots
            rngs[p + slots] = random.Random(p + slots)
    assert max(per_key.values()) <= 40 and len(per_key) > 50
    assert sorted(per_key.values())[len(per_key) // 2] == 40  # keys fill up
    assert len(elements) == len(set(elements))
    assert len(st.generator._slots) == slots  # not one entry per retired process
    with pytest.raises(RuntimeError, match="concurrency"):
        st.generator(random.Random(0), 0, slots)  # an id older than its slot's: wrong slots


def test_set_keys_are_deterministic_for_a_seed() -> None:
    import random

    def ops() -> list[dict[str, Any]]:
        st = workloads.get("set", {"adds_per_key": 10})
        rng = {p: random.Random(f"7:{p}") for p in range(3)}
        return [st.generator(rng[i % 3], i % 3, 3) for i in range(300)]
    assert ops() == ops()


def test_set_workload_rejects_bad_options() -> None:
    for name, opts, word in (("set", {"adds_per_key": 0}, "-W adds_per_key"),
                             ("set", {"adds_per_key": "x"}, "-W adds_per_key"),
                             ("set", {"read_fraction": 1}, "-W read_fraction"),
                             ("set", {"keys": 3}, "-W keys: the set workload has no such"),
                             ("register", {"adds_per_key": 3}, "-W adds_per_key: the register")):
        with pytest.raises(BadInput, match=word):
            workloads.get(name, opts)
    assert workloads.get("set", {"adds_per_key": "64", "seed": 1}).opts["adds_per_key"] == 64


# -- process lifecycle: run a runner in a child interpreter we can kill or interrupt ----------
CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    from chaos.history.writer import HistoryWriter
    from chaos.recorder import Recorder
    from chaos.workload import WorkloadRunner
    import workloads
    from test_workload_support import NoopTarget

    if __name__ == "__main__":
        rec = Recorder(HistoryWriter({hist!r}), time.monotonic_ns())
        runner = WorkloadRunner(NoopTarget(), {{}}, {{}}, workloads.get("register"), rec,
                                concurrency=4, rate=200.0, seed=1, workers=2, op_timeout=2)
        runner.start()
        print(" ".join(str(p.pid) for _, p, _ in runner._procs), flush=True)
        try:
            time.sleep(60)  # runs until the test kills or interrupts it
        except KeyboardInterrupt:
            runner.stop(timeout=5)
            rec.close()
            print("stopped", flush=True)
""")


def _child(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), tests=str(REPO / "tests"),
                                   hist=str(tmp_path / "history.jsonl")))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline() if proc.stdout else ""
    pids = [int(x) for x in line.split()]
    if len(pids) != 2:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"child did not start: {line!r} {err}")
    return proc, pids


def _gone(pid: int, within: float) -> bool:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    try:
        return wait_for(gone, within, f"pid {pid} to exit")
    except AssertionError:
        return False


def _oks(history: Path) -> int:
    """Completed ok ops in a history file so far (it is flushed per op)."""
    return history.read_text().count('"type":"ok"') if history.exists() else 0


@pytest.mark.integration
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    proc, pids = _child(tmp_path)
    try:
        wait_for(lambda: _oks(tmp_path / "history.jsonl") > 0, 20, "the workers' first op")
        proc.kill()
        proc.wait(5)
        assert all(_gone(p, 5) for p in pids), "workers outlived their parent"
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.integration
def test_ctrl_c_reaches_no_worker_and_loses_nothing(tmp_path: Path) -> None:
    proc, pids = _child(tmp_path)
    try:
        wait_for(lambda: _oks(tmp_path / "history.jsonl") > 20, 20, "20 ok ops")
        os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=20)
        assert "stopped" in out, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert all(_gone(p, 5) for p in pids)
        ops = validate_history(tmp_path / "history.jsonl")
        assert sum(1 for o in ops if o["type"] == "ok") > 20
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.integration
def test_sigterm_stops_a_worker_cleanly(server: KVServer, recorder: Recorder,
                                        tmp_path: Path) -> None:
    runner = WorkloadRunner(KVTarget(), addrs(server), {}, workloads.get("register"), recorder,
                            concurrency=4, rate=None, seed=2, workers=2, op_timeout=5)
    runner.start()
    try:
        wait_for(lambda: recorder.stats().ok > 0, 20, "the workers' first ok op")
        victim = runner._procs[0][1]
        os.kill(victim.pid, signal.SIGTERM)
        victim.join(10)
        assert victim.exitcode == 0
        assert runner.alive_workers() == 1
    finally:
        runner.stop(timeout=5)
    recorder.close()
    validate_history(tmp_path / "history.jsonl")  # every invoke completed: nothing lost
    assert recorder.stats().lost_sources == []
