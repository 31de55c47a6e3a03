"""The `local` runtime: every node is a process on 127.0.0.1 with its own directory.

No root, no Docker. Nodes run in their own session (so a Ctrl-C on the terminal reaches only
the controller, which then tears down in order) and with PR_SET_PDEATHSIG=SIGKILL, so even a
controller killed with SIGKILL leaves no node behind. Start/restart must therefore happen on
the controller's main thread (the death signal follows the thread that forked); the run
controller guarantees that by running the nemesis schedule on its main thread.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from chaos.errors import SetupError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the kernel picks it, from its ephemeral range)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def node_port(host: str = "127.0.0.1", tries: int = 200) -> int:
    """A free port for a node to listen on, chosen OUTSIDE the kernel's ephemeral range.

    A port picked with bind(0) is released before the node binds it, and meanwhile every
    other bind(0) on the machine (the mesh's proxies, client sockets) may be handed the same
    port. Ports below the ephemeral range are never handed out that way, so a port free now
    stays free for the node unless something asks for that very number.
    """
    import random
    import socket

    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(tries):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise SetupError(f"no free port below the ephemeral range ({low}) on {host}")


class LocalRuntime:
    """Nodes as local processes. Logs: <store>/nodes/<node>/node.out (stdout+stderr)."""

    name = "local"

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._dirs: dict[str, Path] = {}
        self._logs: dict[str, object] = {}
        self._lock = threading.RLock()

    def setup(self, nodes: list[str], store_dir: str) -> None:
        for node in nodes:
            d = Path(store_dir) / "nodes" / node
            d.mkdir(parents=True, exist_ok=True)
            self._dirs[node] = d

    def host(self, node: str) -> str:
        return "127.0.0.1"

    def data_dir(self, node: str) -> str:
        return str(self._dirs[node])

    def start(self, node: str, argv: list[str]) -> None:
        with self._lock:
            if self.is_running(node):
                raise SetupError(f"node {node} is already running (pid {self._procs[node].pid})")
            log = open(self._dirs[node] / "node.out", "ab", buffering=0)
            try:
                proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self._dirs[node], start_new_session=True, preexec_fn=_die_with_parent,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as exc:
                log.close()
                raise SetupError(f"cannot start node {node}: {argv[0]}: {exc}") from exc
            old = self._logs.pop(node, None)
            if old is not None:
                old.close()  # type: ignore[attr-defined]
            self._procs[node] = proc
            self._logs[node] = log

    def pid(self, node: str) -> int | None:
        proc = self._procs.get(node)
        return proc.pid if proc is not None and proc.poll() is None else None

    def _signal(self, node: str, sig: signal.Signals) -> bool:
        proc = self._procs.get(node)
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.kill(proc.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def stop(self, node: str, timeout: float = 5.0) -> None:
        proc = self._procs.get(node)
        if proc is None or proc.poll() is not None:
            return
        self._signal(node, signal.SIGCONT)
        self._signal(node, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(node)

    def kill(self, node: str) -> None:
        proc = self._procs.get(node)
        if proc is None:
            return
        self._signal(node, signal.SIGKILL)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass

    def pause(self, node: str) -> None:
        self._signal(node, signal.SIGSTOP)

    def resume(self, node: str) -> None:
        self._signal(node, signal.SIGCONT)

    def is_running(self, node: str) -> bool:
        proc = self._procs.get(node)
        return proc is not None and proc.poll() is None

    def is_paused(self, node: str) -> bool:
        """True when the process is stopped (state T in /proc/<pid>/stat)."""
        pid = self.pid(node)
        if pid is None:
            return False
        for _ in range(50):  # SIGSTOP is delivered asynchronously; give it up to 0.5 s
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return False
            if stat.rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return True
            time.sleep(0.01)
        return False

    def collect_logs(self, node: str, dest_dir: str) -> None:
        src = self._dirs.get(node)
        if src is None or Path(dest_dir).resolve() == src.resolve():
            return
        shutil.copytree(src, dest_dir, dirs_exist_ok=True)

    def teardown(self) -> None:
        with self._lock:
            for node in list(self._procs):
                self._signal(node, signal.SIGCONT)
                self._signal(node, signal.SIGKILL)
            for proc in self._procs.values():
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    pass
            for log in self._logs.values():
                log.close()  # type: ignore[attr-defined]
            self._logs.clear()
