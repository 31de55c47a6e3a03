"""The recorder against real concurrent producers: threads, spawned processes, a SIGKILLed one,
and late (out-of-order) delivery. Every test checks the file itself: times never decrease,
indexes are consecutive, each invoke has at most one completion, nothing recorded is lost."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from chaos.history.writer import HistoryWriter
from chaos.recorder import Recorder, RemoteSink
from tests.conftest import wait_for


def load(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def validate_history(path: Path, *, allow_open: set[Any] = frozenset()) -> list[dict[str, Any]]:
    """Assert the file contract; returns the ops. `allow_open`: processes that may end with an
    invoke never completed (a killed source)."""
    ops = load(path)
    assert [o["index"] for o in ops] == list(range(len(ops))), "indexes not consecutive"
    times = [o["time"] for o in ops]
    bad = [i for i in range(1, len(times)) if times[i] < times[i - 1]]
    assert not bad, f"time decreases at lines {bad[:5]}"
    open_: dict[Any, dict[str, Any]] = {}
    for o in ops:
        p = o["process"]
        if o["type"] == "invoke":
            assert p not in open_, f"process {p} invoked twice without completing: {o}"
            open_[p] = o
        else:
            inv = open_.pop(p, None)
            assert inv is not None, f"completion without invoke: {o}"
            assert inv["f"] == o["f"]
    leftover = {p for p in open_ if p not in allow_open}
    assert not leftover, f"invokes never completed: {sorted(map(str, leftover))}"
    return ops


@pytest.fixture
def recorder(tmp_path: Path):
    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), time.monotonic_ns())
    yield rec
    rec.close(timeout=1.0)


def _producer(conn: Any, t0: int, proc_base: int, n_ops: int, seed: int, forever: bool) -> None:
    """A worker-like process: a few threads each doing invoke/complete pairs with jitter."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sink = RemoteSink(conn, t0, interval=0.01)
    sink.start()

    def lane(p: int) -> None:
        rng = random.Random(seed * 100 + p)
        i = 0
        while forever or i < n_ops:
            sink.record({"process": p, "type": "invoke", "f": "write", "key": "k", "value": i})
            time.sleep(rng.random() * 0.002)  # jitter between invoke and completion (load)
            sink.record({"process": p, "type": rng.choice(["ok", "ok", "fail", "info"]),
                         "f": "write", "key": "k", "value": i})
            i += 1

    threads = [threading.Thread(target=lane, args=(proc_base + k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()


def _start_producer(rec: Recorder, name: str, proc_base: int, n_ops: int, seed: int,
                    forever: bool = False):
    ctx = mp.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_producer, args=(w, rec.t0_ns, proc_base, n_ops, seed, forever),
                    daemon=True)
    rec.add_remote(name, r, alive=lambda: p.exitcode is None)  # True until started
    p.start()
    w.close()
    return p


def test_local_threads_interleave_in_time_order(recorder: Recorder, tmp_path: Path) -> None:
    def lane(p: int) -> None:
        src = recorder.local(f"t{p}")
        for i in range(300):
            src.record({"process": p, "type": "invoke", "f": "read", "key": "k", "value": None})
            src.record({"process": p, "type": "ok", "f": "read", "key": "k", "value": i})

    threads = [threading.Thread(target=lane, args=(p,)) for p in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    assert len(ops) == 6 * 300 * 2
    s = recorder.stats()
    assert s.ok == 6 * 300 and s.by_f["read"]["ok"] == 1800 and s.written == 3600


@pytest.mark.integration
def test_processes_and_threads_merge_without_loss(recorder: Recorder, tmp_path: Path) -> None:
    procs = [_start_producer(recorder, f"w{i}", 100 * i, 150, i) for i in range(3)]
    nemesis = recorder.local("nemesis")
    for i in range(20):  # a local source, interleaved with the remote ones
        nemesis.record({"process": "nemesis", "type": "invoke", "f": "kill", "value": i})
        time.sleep(0.005)  # spaces the local ops among the remote ones on purpose
        nemesis.record({"process": "nemesis", "type": "ok", "f": "kill", "value": i})
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    assert len(ops) == 3 * 3 * 150 * 2 + 40
    per_proc = {}
    for o in ops:
        if o["type"] == "invoke" and isinstance(o["process"], int):
            per_proc.setdefault(o["process"], []).append(o["value"])
    assert all(v == list(range(150)) for v in per_proc.values()) and len(per_proc) == 9
    assert recorder.stats().lost_sources == []
    assert recorder.stats().late == 0, "ops arrived behind the watermark (times were clamped)"


def test_late_batch_is_merged_into_its_place(recorder: Recorder, tmp_path: Path) -> None:
    """A remote source delivers an op stamped BEFORE a local op already recorded: the local op
    must wait in the heap, then both land in time order."""
    ctx = mp.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    recorder.add_remote("slow", r)
    t_remote = recorder.now()
    wait_for(lambda: recorder.now() > t_remote, 5, "the recorder's clock to move on")
    local = recorder.local("monitor")
    local.record({"process": "monitor", "type": "invoke", "f": "status", "value": None})
    wait_for(lambda: recorder.stats().pending == 1, 5, "the local op in the heap")
    time.sleep(0.1)  # a window in which the op must stay held back (a check, not a wait)
    assert recorder.stats().written == 0 and recorder.stats().pending == 1, \
        "a local op overtook a remote source's watermark"
    w.send_bytes(orjson.dumps({"ops": [
        {"time": t_remote, "process": 7, "type": "invoke", "f": "read", "key": "k", "value": None},
        {"time": t_remote + 1, "process": 7, "type": "ok", "f": "read", "key": "k", "value": 3},
    ], "wm": recorder.now()}))
    wait_for(lambda: recorder.stats().written >= 3, 5, "3 ops written")
    assert recorder.stats().written == 3
    local.record({"process": "monitor", "type": "ok", "f": "status", "value": {"role": "leader"}})
    w.send_bytes(orjson.dumps({"ops": [], "wm": recorder.now(), "bye": True}))
    w.close()
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    assert [o["process"] for o in ops] == [7, 7, "monitor", "monitor"]
    assert recorder.stats().lost_sources == []


@pytest.mark.integration
def test_sigkilled_worker_does_not_block_the_others(recorder: Recorder, tmp_path: Path) -> None:
    victim = _start_producer(recorder, "victim", 0, 0, 1, forever=True)
    other = _start_producer(recorder, "other", 100, 200, 2)
    wait_for(lambda: recorder.stats().written >= 100, 30, "100 ops written")
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    other.join(30)
    # After the victim is gone, a local op is written promptly (its watermark was dropped).
    wait_for(lambda: "victim" in recorder.stats().lost_sources, 3, "the victim dropped")
    assert recorder.stats().lost_sources == ["victim"]
    before = recorder.stats().written
    recorder.local("nemesis").record({"process": "nemesis", "type": "invoke", "f": "heal",
                                      "value": None})
    wait_for(lambda: recorder.stats().written > before, 2, "the local op written")
    assert recorder.stats().written == before + 1 and recorder.stats().pending == 0
    recorder.local("nemesis").record({"process": "nemesis", "type": "ok", "f": "heal",
                                      "value": None})
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl", allow_open={0, 1, 2})
    assert sum(1 for o in ops if o["process"] in (100, 101, 102)) == 3 * 200 * 2
    assert recorder.stats().late == 0


def test_close_writes_everything_even_with_a_silent_source(recorder: Recorder,
                                                            tmp_path: Path) -> None:
    """A source that never reports holds ops back during the run; close() must not lose them
    (the Ctrl-C path)."""
    ctx = mp.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    recorder.add_remote("silent", r)
    src = recorder.local("nemesis")
    for i in range(5):
        src.record({"process": "nemesis", "type": "invoke", "f": "pause", "value": i})
        src.record({"process": "nemesis", "type": "ok", "f": "pause", "value": i})
    assert recorder.stats().written == 0
    t = time.monotonic()
    recorder.close(timeout=0.2)
    assert time.monotonic() - t < 3
    ops = validate_history(tmp_path / "history.jsonl")
    assert len(ops) == 10
    assert recorder.stats().lost_sources == ["silent"]
    w.close()


def test_counters_split_client_ops_from_the_rest(recorder: Recorder) -> None:
    src = recorder.local("x")
    for typ in ("ok", "fail", "info", "ok"):
        src.record({"process": 1, "type": "invoke", "f": "write", "value": 1})
        src.record({"process": 1, "type": typ, "f": "write", "value": 1,
                    **({"error": "indeterminate: boom"} if typ == "info" else {})})
    src.record({"process": "monitor", "type": "invoke", "f": "status"})
    src.record({"process": "monitor", "type": "info", "f": "status", "error": "no answer"})
    s = recorder.stats()
    assert (s.ok, s.fail, s.info) == (2, 1, 1)
    assert s.by_f == {"write": {"ok": 2, "fail": 1, "info": 1},
                      "status": {"ok": 0, "fail": 0, "info": 1}}
    assert s.last_error == "indeterminate: boom" and s.written == 10
    assert recorder.max_process == 1


@pytest.mark.integration
def test_history_reader_accepts_a_merged_history(recorder: Recorder, tmp_path: Path) -> None:
    reader = pytest.importorskip("chaos.history.reader")
    procs = [_start_producer(recorder, f"w{i}", 10 * i, 50, i) for i in range(2)]
    for p in procs:
        p.join(30)
    recorder.close()
    h = reader.read_history(tmp_path / "history.jsonl")
    assert len(h.pairs) == 2 * 3 * 50


def test_malformed_remote_ops_are_dropped_and_reported(recorder: Recorder,
                                                       tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    recorder.add_remote("odd", r)
    t = recorder.now()
    w.send_bytes(orjson.dumps({"ops": [{"process": 1, "type": "invoke", "f": "read"}, 5],
                               "wm": t}))
    w.send_bytes(orjson.dumps({"ops": [
        {"time": t + 1, "process": 1, "type": "invoke", "f": "read", "value": None},
        {"time": t + 2, "process": 1, "type": "ok", "f": "read", "value": 1}],
        "wm": recorder.now(), "bye": True}))
    w.close()
    assert recorder.wait_remotes(timeout=5)
    recorder.close()
    ops = validate_history(tmp_path / "history.jsonl")
    assert len(ops) == 2 and "malformed op" in (recorder.stats().last_error or "")
    assert recorder.stats().lost_sources == []
