"""The `local` runtime: every node is a set of processes on 127.0.0.1 with its own directory.

No root, no Docker. Each service of a node runs in its own session and process group (so a
Ctrl-C on the terminal reaches only the controller, which then tears down in order, and a
signal to the group reaches every child the service forked) and with PR_SET_PDEATHSIG=SIGKILL,
so even a controller killed with SIGKILL leaves no node behind. Start/restart must therefore
happen on the controller's main thread (the death signal follows the thread that forked); the
run controller guarantees that by running the nemesis schedule on its main thread.

Every node shares the host's address, so each node gets its own free port per named port
(`node_ports`, below the ephemeral range); the target's declared numbers are not used here.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from chaos.errors import SetupError
from chaos.runtime.base import ProxyPlacement, missing_binaries_error, wait_ready
from chaos.target import CommandResult, Service

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
    """Nodes as local process groups. Logs: <store>/nodes/<node>/<service>.out."""

    name = "local"
    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        #: (node, service) -> its process (the leader of its own process group)
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        #: node -> service names in the order they were first started
        self._order: dict[str, list[str]] = {}
        self._dirs: dict[str, Path] = {}
        self._logs: dict[tuple[str, str], IO[bytes]] = {}
        self._ports: dict[str, dict[str, int]] = {}
        self._lock = threading.RLock()

    # -- where nodes are -------------------------------------------------------------------

    def setup(self, nodes: list[str], store_dir: str) -> None:
        for node in nodes:
            d = (Path(store_dir) / "nodes" / node).resolve()
            d.mkdir(parents=True, exist_ok=True)
            self._dirs[node] = d
            self._order.setdefault(node, [])

    def host(self, node: str) -> str:
        return "127.0.0.1"

    def listen_host(self, node: str) -> str:
        return "127.0.0.1"

    def node_ports(self, node: str, declared: Mapping[str, int]) -> dict[str, int]:
        """A distinct free port per node and name (every node shares 127.0.0.1)."""
        with self._lock:
            if node in self._ports and set(self._ports[node]) == set(declared):
                return dict(self._ports[node])
            used = {p for ports in self._ports.values() for p in ports.values()}
            ports: dict[str, int] = {}
            for name in declared:
                port = node_port()
                while port in used:
                    port = node_port()
                used.add(port)
                ports[name] = port
            self._ports[node] = ports
            return dict(ports)

    def data_dir(self, node: str) -> str:
        try:
            return str(self._dirs[node])
        except KeyError:
            raise SetupError(f"unknown node {node!r} (not set up)") from None

    def code_root(self, node: str) -> str:
        import targets

        return str(Path(targets.__file__).resolve().parents[1])

    def python(self, node: str) -> str:
        return sys.executable

    # -- services --------------------------------------------------------------------------

    def start(self, node: str, service: Service) -> None:
        """Write its files, start it in its own process group, wait for its ready port."""
        with self._lock:
            key = (node, service.name)
            if self.is_running(node, service.name):
                raise SetupError(f"node {node}: service {service.name} is already running "
                                 f"(pid {self._procs[key].pid})")
            d = Path(self.data_dir(node))
            user = _user(node, service)
            for rel, content in service.files.items():
                path = d / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            if user is not None:
                _chown_tree(d, user)
            log = open(d / f"{service.name}.out", "ab", buffering=0)
            try:
                proc = subprocess.Popen(
                    service.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=d, start_new_session=True, preexec_fn=_die_with_parent,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **service.env},
                    user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                )
            except (OSError, IndexError) as exc:
                log.close()
                what = service.argv[0] if service.argv else "(empty argv)"
                raise SetupError(f"cannot start node {node} service {service.name}: "
                                 f"{what}: {exc}") from exc
            old = self._logs.pop(key, None)
            if old is not None:
                old.close()
            self._procs[key] = proc
            self._logs[key] = log
            if service.name not in self._order.setdefault(node, []):
                self._order[node].append(service.name)
        port = None
        if service.ready_port is not None:
            try:
                port = self._ports[node][service.ready_port]
            except KeyError:
                raise SetupError(f"node {node}: service {service.name} waits for port "
                                 f"{service.ready_port!r}, which node_ports did not assign") \
                    from None
        wait_ready(self, node, service, port)

    def _selected(self, node: str, service: str | None) -> list[subprocess.Popen[bytes]]:
        """The processes `service` names (None: every service of the node, in start order)."""
        names = list(self._order.get(node, [])) if service is None else [service]
        return [self._procs[(node, n)] for n in names if (node, n) in self._procs]

    def pid(self, node: str, service: str | None = None) -> int | None:
        """The pid (= process group id) of a running service (None: the first one)."""
        for proc in self._selected(node, service):
            if proc.poll() is None:
                return proc.pid
        return None

    def _signal(self, node: str, service: str | None, sig: signal.Signals) -> bool:
        """`sig` to the process group of each selected service; True when one was reached.
        Sent even when the group leader has exited: its children may live on in the group."""
        hit = False
        for proc in self._selected(node, service):
            try:
                os.killpg(proc.pid, sig)
                hit = True
            except (ProcessLookupError, PermissionError):
                pass
        return hit

    def _wait_gone(self, procs: list[subprocess.Popen[bytes]], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
            while _group_alive(proc.pid):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
        return True

    def stop(self, node: str, service: str | None = None, timeout: float = 5.0) -> None:
        procs = self._selected(node, service)
        if not procs:
            return
        self._signal(node, service, signal.SIGCONT)
        self._signal(node, service, signal.SIGTERM)
        if not self._wait_gone(procs, timeout):
            self.kill(node, service)

    def kill(self, node: str, service: str | None = None) -> None:
        """SIGKILL every process of the service(s); returns once they are gone."""
        procs = self._selected(node, service)
        self._signal(node, service, signal.SIGKILL)
        self._wait_gone(procs, 5.0)

    def pause(self, node: str, service: str | None = None) -> None:
        self._signal(node, service, signal.SIGSTOP)

    def resume(self, node: str, service: str | None = None) -> None:
        self._signal(node, service, signal.SIGCONT)

    def is_running(self, node: str, service: str | None = None) -> bool:
        return any(p.poll() is None for p in self._selected(node, service))

    def is_paused(self, node: str, service: str | None = None) -> bool:
        """True when every running selected service is stopped (state T in /proc/<pid>/stat).
        SIGSTOP is delivered asynchronously: polled for up to 0.5 s."""
        running = [p.pid for p in self._selected(node, service) if p.poll() is None]
        if not running:
            return False
        deadline = time.monotonic() + 0.5
        while True:
            states = [_state(pid) for pid in running]
            if all(s in ("T", "t") for s in states):
                return True
            if any(s == "-" for s in states) or time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    # -- the host --------------------------------------------------------------------------

    def run(self, node: str, command: str, timeout: float = 30.0) -> CommandResult:
        try:
            res = subprocess.run(command, shell=True, cwd=self.data_dir(node), timeout=timeout,
                                 capture_output=True, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            return CommandResult(False, "", f"`{command[:80]}` timed out after {timeout} s", -1)
        return CommandResult(res.returncode == 0, res.stdout, res.stderr, res.returncode)

    def check_binaries(self, binaries: Mapping[str, str]) -> None:
        missing = {exe: pkg for exe, pkg in binaries.items() if not present(exe)}
        if missing:
            raise missing_binaries_error("this machine (--runtime local)", missing)

    def proxy_server(self) -> ProxyPlacement | None:
        return None  # the controller runs its own embedded proxy server

    def collect_logs(self, node: str, dest_dir: str) -> None:
        src = self._dirs.get(node)
        if src is None or Path(dest_dir).resolve() == src.resolve():
            return
        shutil.copytree(src, dest_dir, dirs_exist_ok=True)

    def teardown(self) -> None:
        with self._lock:
            for node in list(self._order):
                self._signal(node, None, signal.SIGCONT)
                self._signal(node, None, signal.SIGKILL)
            self._wait_gone(list(self._procs.values()), 5.0)
            for log in self._logs.values():
                log.close()
            self._logs.clear()


def present(exe: str) -> bool:
    """An executable on PATH, or a file at an absolute path (a library a fault preloads)."""
    return shutil.which(exe) is not None or (os.path.isabs(exe) and os.path.isfile(exe))


def _state(pid: int) -> str:
    """The state letter of a process (R, S, T, Z, ...), "-" when it does not exist."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "-"


def _group_alive(pgid: int) -> bool:
    """Does any process other than a zombie remain in process group `pgid`?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _user(node: str, service: Service) -> pwd.struct_passwd | None:
    """The account a service runs as (None: ours). Switching needs root."""
    if service.user is None:
        return None
    try:
        entry = pwd.getpwnam(service.user)
    except KeyError:
        raise SetupError(f"node {node}: service {service.name} runs as user {service.user!r}, "
                         "which does not exist on this machine") from None
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise SetupError(f"node {node}: service {service.name} runs as user {service.user!r}: "
                         "the local runtime must run as root to switch users")
    return entry


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    os.chown(root, user.pw_uid, user.pw_gid)
    for path in root.rglob("*"):
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
