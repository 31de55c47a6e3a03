"""Liveness during the run: a dead cluster ends the load phase early and the verdict unknown.

Unit tests drive chaos.liveness.Liveness with small stand-ins (its logic only); the
integration tests run `chaos run` for real and SIGKILL the node processes (local) or remove
the node containers (docker) mid-run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chaos.liveness import ClusterDown, Liveness
from tests.runhelp import REPO

NODES = ("n1", "n2", "n3")


# -- unit: the rules ---------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ops: list[dict[str, Any]] = []

    def now(self) -> int:
        return int((self.clock.t - 100.0) * 1e9)

    def local(self, name: str) -> "Recorder":
        return self

    def record(self, op: dict[str, Any]) -> dict[str, Any]:
        self.ops.append(op)
        return op


class World:
    """Which nodes run and answer, and what the nemesis holds down."""

    def __init__(self) -> None:
        self.running = set(NODES)
        self.answering = set(NODES)
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.gone: set[str] = set()

    # runtime
    def is_running(self, node: str) -> bool:
        if node in self.gone:
            raise RuntimeError(f"no such container: chaos-{node}")
        return node in self.running

    # monitor
    @property
    def latest(self) -> dict[str, Any]:
        return {n: ({"role": "follower"} if n in self.answering else None) for n in NODES}


def watcher(world: World) -> tuple[Liveness, Clock, Recorder]:
    clock = Clock()
    rec = Recorder(clock)
    return Liveness(world, NODES, world, world, rec, clock=clock), clock, rec


def test_healthy_cluster_never_asks_the_runtime_and_never_dies():
    w = World()
    w.is_running = None  # type: ignore[assignment] # would crash if called
    live, clock, rec = watcher(w)
    for _ in range(100):
        clock.t += 0.1
        live.tick()
    assert rec.ops == []


def test_every_node_down_and_not_killed_by_the_nemesis_is_dead_at_once():
    w = World()
    live, clock, rec = watcher(w)
    clock.t += 5.0
    live.tick()
    w.running.clear()
    w.answering.clear()
    clock.t += 0.1
    with pytest.raises(ClusterDown) as ei:
        live.tick()
    msg = str(ei.value)
    assert ("every node is down: n1, n2, n3 not running since 5.100 s (last monitor answer "
            "at 5.000 s)") in msg
    assert "ended early at 5.100 s" in msg
    assert [op["type"] for op in rec.ops] == ["invoke", "ok"]
    assert rec.ops[1]["process"] == "controller" and rec.ops[1]["f"] == "cluster-down"
    assert rec.ops[1]["value"]["message"] == msg
    with pytest.raises(ClusterDown):  # stays dead
        live.tick()


def test_nodes_the_nemesis_killed_and_will_restart_are_not_death():
    w = World()
    live, clock, rec = watcher(w)
    w.running.clear()
    w.answering.clear()
    w.killed = set(NODES)  # a kill-all fault: the nemesis restarts them
    clock.t += 1.0
    live.tick()
    w.killed = {"n1"}  # but n2 and n3 died on their own
    clock.t += 0.1
    with pytest.raises(ClusterDown) as ei:
        live.tick()
    assert "n2, n3 not running" in str(ei.value) and "n1 killed by the nemesis" in str(ei.value)


def test_some_nodes_down_is_not_death():
    w = World()
    live, clock, _ = watcher(w)
    w.running -= {"n1", "n2"}
    w.answering = {"n3"}
    for _ in range(100):
        clock.t += 0.1
        live.tick()


def test_removed_containers_count_as_down_and_say_so():
    w = World()
    live, clock, _ = watcher(w)
    w.gone = set(NODES)
    w.answering.clear()
    clock.t += 0.2
    with pytest.raises(ClusterDown) as ei:
        live.tick()
    assert ("n1, n2, n3 gone (the runtime cannot reach it: RuntimeError: no such container"
            in str(ei.value))


def test_running_but_silent_for_longer_than_the_limit_is_dead_unless_paused_by_the_nemesis():
    w = World()
    live, clock, _ = watcher(w)
    w.answering.clear()  # hung: processes run, nobody answers
    w.paused = set(NODES)
    for _ in range(80):
        clock.t += 0.1
        live.tick()  # 8 s, but the nemesis paused them all: not dead
    w.paused = set()
    clock.t += 0.1
    with pytest.raises(ClusterDown) as ei:
        live.tick()
    assert "no node answered the monitor for 8.1 s" in str(ei.value)


def test_silence_shorter_than_the_limit_is_fine():
    w = World()
    live, clock, _ = watcher(w)
    w.answering.clear()
    for _ in range(45):
        clock.t += 0.1
        live.tick()
    w.answering = {"n2"}
    clock.t += 0.1
    live.tick()


# -- integration: real processes ---------------------------------------------------------------

def _chaos(store: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "chaos", "run", "--store", str(store), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _poll(what: str, cond: Any, timeout: float, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"chaos run ended (exit {proc.returncode}) before {what}:\n"
                                 f"{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _ok_ops(store: Path) -> int:
    n = 0
    for h in {p.resolve() for p in store.glob("*/*/history.jsonl")}:
        with open(h, "rb") as f:
            n += sum(1 for line in f if b'"type":"ok"' in line and b'"process":"' not in line)
    return n


def _node_pids(store: Path) -> dict[int, str]:
    """pid -> cmdline of the node processes started under `store` (found via /proc)."""
    found = {}
    marker = str(store.resolve()).encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmd and b"--data-dir" in cmd:
            found[int(d.name)] = cmd.replace(b"\0", b" ").decode(errors="replace")
    return found


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"chaos run did not end in {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def _load_end_s(run_dir: Path) -> float:
    """The last invoke of a client op that is not a final read, in seconds."""
    last = 0
    with open(run_dir / "history.jsonl") as f:
        for line in f:
            op = json.loads(line)
            if isinstance(op["process"], int) and not op.get("final") and op["type"] == "invoke":
                last = max(last, op["time"])
    return last / 1e9


def _assert_dead_verdict(code: int, out: str, err: str, store: Path, time_limit: float) -> None:
    assert code == 2, f"exit {code}\n{out}\n{err[-3000:]}"
    (run_dir,) = {p.parent.resolve() for p in store.glob("*/*/results.json")}
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["valid"] == "unknown"
    first = doc["reasons"][0]
    assert first.startswith("every node is down") or "stopped answering" in first, doc["reasons"]
    assert " since " in first and "ended early at" in first
    lines = [ln for ln in out.splitlines() if "UNKNOWN" in ln]
    assert lines and first in lines[0], out  # the summary's first verdict line says why
    assert _load_end_s(run_dir) < time_limit - 3, "the load phase did not end early"
    lw = doc["results"]["lost-writes"]
    assert lw["valid"] != True  # noqa: E712 - never valid on failed final reads


@pytest.mark.integration
def test_local_nodes_sigkilled_mid_run_end_early_unknown(tmp_path):
    store = tmp_path / "store"
    limit = 15
    proc = _chaos(store, "--workload", "set", "--nemesis", "none", "--time-limit", str(limit),
                  "--seed", "3", "--quiesce", "1")
    pids = _poll("three node processes", lambda: len(_node_pids(store)) >= 3 and _node_pids(store),
                 120, proc)
    t_up = time.monotonic()
    _poll("client load (100 ok ops)", lambda: _ok_ops(store) >= 100, 60, proc)
    _poll("~5 s of load", lambda: time.monotonic() - t_up >= 5, 30, proc)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    code, out, err = _finish(proc, 120)
    _assert_dead_verdict(code, out, err, store, limit)
    (res,) = {p.resolve() for p in store.glob("*/*/results.json")}
    assert "n1, n2, n3" in json.loads(res.read_text())["reasons"][0]


@pytest.mark.docker
@pytest.mark.integration
def test_docker_containers_removed_mid_run_end_early_unknown(tmp_path):
    import docker
    import docker.errors

    store = tmp_path / "store"
    limit = 20
    proc = _chaos(store, "--workload", "set", "--nemesis", "none", "--time-limit", str(limit),
                  "--runtime", "docker", "--seed", "3", "--quiesce", "1")
    client = docker.from_env()
    try:
        def node_containers() -> list[str]:
            """Ids of this run's node containers: they carry the run's SSH public key."""
            keys = {p.read_text().strip() for p in store.glob("*/*/ssh/id_ed25519.pub")}
            mine = []
            for c in client.api.containers(filters={"label": "chaos.node"}):
                try:
                    env = client.api.inspect_container(c["Id"])["Config"]["Env"] or []
                except docker.errors.NotFound:  # another test's container, just removed
                    continue
                if any(e.split("=", 1)[-1].strip() in keys for e in env
                       if e.startswith("CHAOS_AUTHORIZED_KEY=")):
                    mine.append(c["Id"])
            return mine if len(mine) >= 3 else []

        _poll("client load (100 ok ops)", lambda: _ok_ops(store) >= 100, 400, proc)
        t_up = time.monotonic()
        _poll("~5 s of load", lambda: time.monotonic() - t_up >= 5, 30, proc)
        containers = _poll("three node containers", node_containers, 30, proc)
        for cid in containers:
            client.api.remove_container(cid, force=True)
        code, out, err = _finish(proc, 240)
    finally:
        client.close()
    _assert_dead_verdict(code, out, err, store, limit)
