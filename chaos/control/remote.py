"""Node processes on remote hosts, controlled by signals over SSH (Jepsen's way).

Shared by the `docker` and `ssh` runtimes. A node's command runs as the leader of its own
session and process group (`setsid`), so one `kill -SIG -- -PGID` reaches it and any child it
forks. Its stdout+stderr go to `<data_dir>/node.out` (as in the local runtime), its pid to
`<data_dir>/node.pid`. Pause is SIGSTOP, not `docker pause`: the node freezes with its sockets
open while sshd, and so our control and verification, keep working; it is also the only way
that works on plain SSH hosts.
"""
from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from chaos.control.ssh import SshSession, pack_trees
from chaos.errors import SetupError

T = TypeVar("T")
CODE_DIR = "/opt/chaos"
DATA_ROOT = "/var/lib/chaos"

#: prints the state letter of process $P (R, S, T, Z, ...) or "-" when it does not exist
_STATE = (
    'if read -r l < /proc/$P/stat 2>/dev/null; then s=${l##*) }; echo ${s%% *}; '
    'else echo -; fi'
)


def code_roots() -> list[Path]:
    """The Python packages shipped into nodes: chaos/ and targets/ of this checkout/install."""
    import chaos
    import targets

    return [Path(chaos.__file__).parent, Path(targets.__file__).parent]


def code_archive() -> bytes:
    """chaos/ and targets/ (.py only) as one tar, packed once per setup and sent to every node."""
    return pack_trees([str(root) for root in code_roots()])[0]


def parallel(fn: Callable[[str], T], items: Iterable[str], workers: int = 16) -> dict[str, T]:
    """{item: fn(item)} run in threads; the first exception is re-raised after all finish."""
    items = list(items)
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = {item: pool.submit(fn, item) for item in items}
    return {item: fut.result() for item, fut in futures.items()}


class RemoteProcesses:
    """start/stop/kill/pause/resume one background process per node over its SSH session."""

    def __init__(self, sessions: dict[str, SshSession], code_dir: str = CODE_DIR,
                 data_root: str = DATA_ROOT):
        self.sessions = sessions
        self.code_dir = code_dir
        self.data_root = data_root
        self._pids: dict[str, int] = {}

    def data_dir(self, node: str) -> str:
        return f"{self.data_root}/{node}"

    def session(self, node: str) -> SshSession:
        try:
            return self.sessions[node]
        except KeyError:
            raise SetupError(f"unknown node {node!r} (not set up)") from None

    def attach(self, node: str, session: SshSession, code: bytes) -> None:
        """Drive `node` through a connected `session`: unpack the code tar (`code_archive`)
        into code_dir and empty the node's data dir (setup of both remote runtimes)."""
        self.sessions[node] = session
        session.upload_tar(code, self.code_dir)
        self.prepare(node)

    def prepare(self, node: str, wipe: bool = True) -> None:
        """Create (and by default empty) the node's data directory."""
        d = shlex.quote(self.data_dir(node))
        self.session(node).run(f"{'rm -rf ' + d + ' && ' if wipe else ''}mkdir -p {d}", check=True)

    def pid(self, node: str) -> int | None:
        return self._pids.get(node)

    def state(self, node: str) -> str:
        """The process state letter (R/S/D/T/Z) of the node's process, "-" when none."""
        pid = self._pids.get(node)
        if pid is None:
            return "-"
        return self.session(node).run(f"P={pid}; {_STATE}", timeout=15).out.strip() or "-"

    def start(self, node: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Run argv in the background in the node's data dir; returns its pid (= its pgid)."""
        if self.is_running(node):
            raise SetupError(f"node {node} is already running (pid {self._pids[node]})")
        d = self.data_dir(node)
        qd = shlex.quote(d)
        environment = {"PYTHONPATH": self.code_dir, "PYTHONUNBUFFERED": "1", **(env or {})}
        env_words = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items())
        inner = f'echo $$ > {qd}/node.pid.new && mv {qd}/node.pid.new {qd}/node.pid && exec "$@"'
        command = (
            f"mkdir -p {qd} && cd {qd} && rm -f node.pid || exit 1; "
            f"{env_words} setsid sh -c {shlex.quote(inner)} chaos-node {shlex.join(argv)} "
            f">> {qd}/node.out 2>&1 < /dev/null & "
            f"i=0; while [ ! -s {qd}/node.pid ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done; "
            f"cat {qd}/node.pid"
        )
        res = self.session(node).run(command, timeout=30)
        try:
            pid = int(res.out.strip())
        except ValueError:
            raise SetupError(
                f"cannot start node {node}: {argv[0]} did not start "
                f"({(res.err or res.out).strip()[:200] or 'no pid file'})"
            ) from None
        self._pids[node] = pid
        return pid

    def signal(self, node: str, sig: str) -> bool:
        """Send SIG (e.g. "KILL") to the node's process group; False when it is not running."""
        pid = self._pids.get(node)
        if pid is None:
            return False
        res = self.session(node).run(f"kill -{sig} -- -{pid} 2>/dev/null || kill -{sig} {pid}",
                                     timeout=15)
        return res.ok

    def _wait_gone(self, node: str, timeout: float) -> bool:
        """Wait remotely until the process is gone (or a zombie); True when it is."""
        pid = self._pids.get(node)
        if pid is None:
            return True
        steps = max(1, int(timeout / 0.05))
        script = (
            f"P={pid}; i=0; while [ $i -lt {steps} ]; do s=$({_STATE}); "
            f'case "$s" in -|Z|X) exit 0;; esac; sleep 0.05; i=$((i+1)); done; exit 1'
        )
        return self.session(node).run(script, timeout=timeout + 15).ok

    def stop(self, node: str, timeout: float = 5.0) -> None:
        """SIGCONT+SIGTERM, SIGKILL after timeout. No error when already stopped."""
        if not self.is_running(node):
            return
        self.signal(node, "CONT")
        self.signal(node, "TERM")
        if not self._wait_gone(node, timeout):
            self.kill(node)

    def kill(self, node: str) -> None:
        """SIGKILL (a crash); returns once the process is gone so a restart can bind its port."""
        if self.signal(node, "KILL"):
            self._wait_gone(node, 5.0)

    def pause(self, node: str) -> None:
        self.signal(node, "STOP")

    def resume(self, node: str) -> None:
        self.signal(node, "CONT")

    def is_running(self, node: str) -> bool:
        return self.state(node) not in ("-", "Z", "X")

    def is_paused(self, node: str) -> bool:
        """True when the process is stopped (state T); SIGSTOP is asynchronous, so poll 0.5 s."""
        deadline = time.monotonic() + 0.5
        while True:
            state = self.state(node)
            if state in ("T", "t"):
                return True
            if state in ("-", "Z", "X") or time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def collect_logs(self, node: str, dest_dir: str) -> list[str]:
        """Download the regular files of the node's data dir (node.out and the target's logs)."""
        return self.session(node).download_dir(self.data_dir(node), dest_dir)

    def kill_all(self) -> None:
        """SIGKILL every process we started (best effort, in parallel; for teardown)."""
        def one(node: str) -> None:
            try:
                self.signal(node, "KILL")
            except SetupError:
                pass
        parallel(one, list(self._pids))
        self._pids.clear()

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


class RemoteNodeControl:
    """The Runtime methods that act on node processes over SSH, shared by the docker and ssh
    runtimes (they differ only in how hosts come to exist, not in how nodes are driven).
    Subclasses set `self.procs` (a RemoteProcesses) and define `host`, `setup`, `teardown`."""

    procs: RemoteProcesses

    def data_dir(self, node: str) -> str:
        return self.procs.data_dir(node)

    def start(self, node: str, argv: list[str]) -> None:
        self.procs.start(node, argv)

    def stop(self, node: str, timeout: float = 5.0) -> None:
        self.procs.stop(node, timeout)

    def kill(self, node: str) -> None:
        self.procs.kill(node)

    def pause(self, node: str) -> None:
        self.procs.pause(node)

    def resume(self, node: str) -> None:
        self.procs.resume(node)

    def is_running(self, node: str) -> bool:
        return self.procs.is_running(node)

    def is_paused(self, node: str) -> bool:
        return self.procs.is_paused(node)

    def collect_logs(self, node: str, dest_dir: str) -> None:
        self.procs.collect_logs(node, dest_dir)

    def run(self, node: str, command: str, timeout: float = 30.0, check: bool = False):
        """Run a shell command on the node's host over SSH (for net backends and targets)."""
        return self.procs.session(node).run(command, timeout=timeout, check=check)
