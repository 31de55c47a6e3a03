"""Ctrl-C in the middle of a partition: faults healed, nodes gone, history kept and readable."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runhelp import REPO, chaos

pytestmark = pytest.mark.integration


def _procs_mentioning(text: str) -> dict[int, list[str]]:
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(text in a for a in args):
            found[int(pid)] = args
    return found


def _ports_of_peers(cmdlines: dict[int, list[str]]) -> set[int]:
    ports = set()
    for args in cmdlines.values():
        for a, b in zip(args, args[1:]):
            if a == "--peer":
                ports.add(int(b.rsplit(":", 1)[1]))
    return ports


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def test_sigint_during_partition_cleans_up_and_keeps_history(tmp_path):
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", "--workload", "set", "--nemesis", "partition",
         "--nemesis-interval", "2", "--time-limit", "60", "--seed", "3", "--store", str(store),
         "--quiet", "-O", "replication=async", "-O", "failover=naive"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        history = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(
                    f"chaos run ended early (exit {proc.returncode}): {err[-2000:]}")
            found = [h.resolve() for h in store.glob("*/*/history.jsonl")
                     if h.parent.name != "latest"]
            if found and '"f":"start-partition"' in found[0].read_text() and \
                    '"type":"ok","f":"start-partition"' in found[0].read_text():
                history = found[0]
                break
            time.sleep(0.1)
        assert history is not None, "partition never started"
        run_dir = history.parent
        nodes = _procs_mentioning(str(run_dir))
        assert len(nodes) == 3, nodes
        proxy_ports = _ports_of_peers(nodes)
        assert proxy_ports and not all(_refuses(p) for p in proxy_ports)  # uncut links accept

        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, (out, err)
    assert "interrupted" in out, out
    assert "Traceback" not in err, err
    # Every node process is gone, every proxy listener closed.
    assert _procs_mentioning(str(run_dir)) == {}
    assert all(_refuses(p) for p in proxy_ports)
    # The partition was healed and recorded; the history so far is on disk and readable.
    ops = [json.loads(line) for line in history.read_text().splitlines()]
    fs = [(o["f"], o["type"]) for o in ops if o["process"] == "nemesis"]
    assert ("start-partition", "ok") in fs
    assert fs[-1] == ("heal", "ok"), fs[-4:]
    res = chaos("analyze", str(run_dir), "--json")
    assert res.returncode in (0, 1, 2), res.stderr
    assert json.loads(res.stdout)["valid"] in (True, False, "unknown")
