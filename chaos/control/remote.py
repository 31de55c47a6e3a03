"""Node services on remote hosts, controlled by signals over SSH (Jepsen's way).

Shared by the `docker` and `ssh` runtimes. Each service of a node runs as the leader of its own
session and process group (`setsid`), so one `kill -SIG -- -PGID` reaches it and any child it
forks; a whole-node signal goes to every service's group. A service's stdout+stderr go to
`<data_dir>/<service>.out` (as in the local runtime), its pid to `<data_dir>/<service>.pid`.
Pause is SIGSTOP, not `docker pause`: the node freezes with its sockets open while sshd, and
so our control and verification, keep working; it is also the only way that works on plain
SSH hosts.
"""
from __future__ import annotations

import io
import shlex
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from chaos.control.ssh import RemoteError, SshSession, pack_trees
from chaos.errors import SetupError
from chaos.runtime.base import missing_binaries_error, wait_ready
from chaos.target import CommandResult, Service

T = TypeVar("T")
CODE_DIR = "/opt/chaos"
DATA_ROOT = "/var/lib/chaos"

#: prints the state letter of process $P (R, S, T, Z, ...) or "-" when it does not exist
_STATE = (
    'if read -r l 2>/dev/null < /proc/$P/stat; then s=${l##*) }; echo ${s%% *}; '
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


def _files_tar(files: Mapping[str, str]) -> bytes:
    """Files (path relative to the unpack root -> content) as one tar to unpack there."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


#: exits 0 once no process of group $P is left but zombies (procps' ps; leader state else)
_GROUP_GONE = (
    "s=$(" + _STATE + "); case \"$s\" in -|Z|X) ;; *) exit 1;; esac; "
    "command -v ps >/dev/null || exit 0; "
    "ps -e -o pgid=,stat= | awk -v p=$P '$1==p && $2 !~ /^Z/ {f=1} END {exit f}'"
)


class RemoteProcesses:
    """start/stop/kill/pause/resume the services of each node over the node's SSH session."""

    def __init__(self, sessions: dict[str, SshSession], code_dir: str = CODE_DIR,
                 data_root: str = DATA_ROOT):
        self.sessions = sessions
        self.code_dir = code_dir
        self.data_root = data_root
        #: (node, service) -> pid (= its process group id)
        self._pids: dict[tuple[str, str], int] = {}
        #: node -> service names in the order they were first started
        self._order: dict[str, list[str]] = {}

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

    def _selected(self, node: str, service: str | None) -> list[int]:
        names = list(self._order.get(node, [])) if service is None else [service]
        return [self._pids[(node, n)] for n in names if (node, n) in self._pids]

    def pid(self, node: str, service: str | None = None) -> int | None:
        pids = self._selected(node, service)
        return pids[0] if pids else None

    def states(self, node: str, service: str | None = None) -> list[str]:
        """The state letters (R/S/D/T/Z, "-" when gone) of the selected services' processes."""
        pids = self._selected(node, service)
        if not pids:
            return []
        script = "; ".join(f"P={pid}; {_STATE}" for pid in pids)
        # One state per pid, or we do not know: a failed or short answer (sshd could not fork
        # on a loaded host, a channel refused) must never read as "gone" — that made a live
        # node look like it had exited during start-up. Ask again, then say we cannot tell.
        problem = ""
        for attempt in range(3):
            res = self.session(node).run(script, timeout=15)
            out = res.out.split()
            if res.ok and len(out) == len(pids):
                return out
            problem = f"exit {res.rc}, {len(out)} of {len(pids)} states, {res.err.strip()[:120]!r}"
            time.sleep(0.1 * (attempt + 1))
        raise RemoteError(f"node {node}: cannot read its process states ({problem})")

    def state(self, node: str, service: str | None = None) -> str:
        """The state of the first selected service's process, "-" when none."""
        states = self.states(node, service)
        return states[0] if states else "-"

    def start(self, node: str, service: Service, env: dict[str, str] | None = None) -> int:
        """Write the service's files, run its argv in the background in the node's data dir
        in its own process group; returns its pid (= its pgid)."""
        if self.is_running(node, service.name):
            raise SetupError(f"node {node}: service {service.name} is already running "
                             f"(pid {self._pids[(node, service.name)]})")
        if not service.argv:
            raise SetupError(f"cannot start node {node} service {service.name}: empty argv")
        d = self.data_dir(node)
        qd = shlex.quote(d)
        session = self.session(node)
        relative = {p: c for p, c in service.files.items() if not p.startswith("/")}
        absolute = {p[1:]: c for p, c in service.files.items() if p.startswith("/")}
        if relative:
            session.upload_tar(_files_tar(relative), d)
        if absolute:
            session.upload_tar(_files_tar(absolute), "/")
        name = shlex.quote(service.name)
        environment = {"PYTHONPATH": self.code_dir, "PYTHONUNBUFFERED": "1", **(env or {}),
                       **service.env}
        env_words = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items())
        run_as = ""
        if service.user:
            u = shlex.quote(service.user)
            session.run(f"chown -R {u} {qd}", check=True)
            run_as = f"setpriv --reuid={u} --regid=$(id -g {u}) --init-groups "
        pid_file, out = f"{qd}/{name}.pid", f"{qd}/{name}.out"
        inner = f'echo $$ > {pid_file}.new && mv {pid_file}.new {pid_file} && exec "$@"'
        command = (
            f"mkdir -p {qd} && cd {qd} && rm -f {pid_file} || exit 1; "
            f"{env_words} setsid sh -c {shlex.quote(inner)} chaos-node {run_as}"
            f"{shlex.join(service.argv)} >> {out} 2>&1 < /dev/null & "
            f"i=0; while [ ! -s {pid_file} ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done; "
            f"cat {pid_file}"
        )
        res = session.run(command, timeout=30)
        try:
            pid = int(res.out.strip())
        except ValueError:
            raise SetupError(
                f"cannot start node {node} service {service.name}: {service.argv[0]} did not "
                f"start ({(res.err or res.out).strip()[:200] or 'no pid file'})"
            ) from None
        self._pids[(node, service.name)] = pid
        if service.name not in self._order.setdefault(node, []):
            self._order[node].append(service.name)
        return pid

    def signal(self, node: str, sig: str, service: str | None = None) -> bool:
        """Send SIG (e.g. "KILL") to each selected service's process group; False when none
        was started. Sent even when a leader exited: its children may live on in its group."""
        pids = self._selected(node, service)
        if not pids:
            return False
        script = "; ".join(f"kill -{sig} -- -{p} 2>/dev/null || kill -{sig} {p} 2>/dev/null"
                           for p in pids) + "; true"
        return self.session(node).run(script, timeout=15).ok

    def _wait_gone(self, node: str, service: str | None, timeout: float) -> bool:
        """Wait remotely until every selected process group is empty (zombies aside)."""
        pids = self._selected(node, service)
        if not pids:
            return True
        steps = max(1, int(timeout / 0.05))
        groups = " ".join(str(p) for p in pids)
        script = (
            f"i=0; while [ $i -lt {steps} ]; do left=0; for P in {groups}; do "
            f"( {_GROUP_GONE} ) || left=1; done; [ $left = 0 ] && exit 0; "
            f"sleep 0.05; i=$((i+1)); done; exit 1"
        )
        return self.session(node).run(script, timeout=timeout + 15).ok

    def stop(self, node: str, service: str | None = None, timeout: float = 5.0) -> None:
        """SIGCONT+SIGTERM, SIGKILL after timeout. No error when already stopped."""
        if not self.is_running(node, service):
            return
        self.signal(node, "CONT", service)
        self.signal(node, "TERM", service)
        if not self._wait_gone(node, service, timeout):
            self.kill(node, service)

    def kill(self, node: str, service: str | None = None) -> None:
        """SIGKILL (a crash); returns once the processes are gone so a restart can bind."""
        if self.signal(node, "KILL", service):
            self._wait_gone(node, service, 5.0)

    def pause(self, node: str, service: str | None = None) -> None:
        self.signal(node, "STOP", service)

    def resume(self, node: str, service: str | None = None) -> None:
        self.signal(node, "CONT", service)

    def is_running(self, node: str, service: str | None = None) -> bool:
        return any(s not in ("-", "Z", "X") for s in self.states(node, service))

    def is_paused(self, node: str, service: str | None = None) -> bool:
        """True when every running selected process is stopped (state T); SIGSTOP is
        asynchronous, so poll up to 0.5 s."""
        deadline = time.monotonic() + 0.5
        while True:
            states = [s for s in self.states(node, service) if s not in ("Z", "X")]
            if states and all(s in ("T", "t") for s in states):
                return True
            if not states or "-" in states or time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def collect_logs(self, node: str, dest_dir: str) -> list[str]:
        """Download the regular files of the node's data dir (service outputs, target logs)."""
        return self.session(node).download_dir(self.data_dir(node), dest_dir)

    def kill_all(self) -> None:
        """SIGKILL every process we started (best effort, in parallel; for teardown)."""
        def one(node: str) -> None:
            try:
                self.signal(node, "KILL")
            except SetupError:
                pass
        parallel(one, [n for n in self._order if n in self.sessions])
        self._pids.clear()
        self._order.clear()

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


class RemoteNodeControl:
    """The Runtime methods that act on node services over SSH, shared by the docker and ssh
    runtimes (they differ only in how hosts come to exist, not in how nodes are driven).
    Subclasses set `self.procs` (a RemoteProcesses) and define `host`, `setup`, `teardown`,
    `capabilities`, `check_binaries` and `proxy_server`. Each node has its own address, so
    its ports are the target's declared numbers."""

    procs: RemoteProcesses

    def data_dir(self, node: str) -> str:
        return self.procs.data_dir(node)

    def listen_host(self, node: str) -> str:
        return "0.0.0.0"

    def node_ports(self, node: str, declared: Mapping[str, int]) -> dict[str, int]:
        ports = dict(declared)
        self._ports = {**getattr(self, "_ports", {}), node: ports}
        return dict(ports)

    def code_root(self, node: str) -> str:
        return self.procs.code_dir

    def python(self, node: str) -> str:
        return "python3"

    def start(self, node: str, service: Service) -> None:
        self.procs.start(node, service)
        port = None
        if service.ready_port is not None:
            ports = getattr(self, "_ports", {}).get(node, {})
            if service.ready_port not in ports:
                raise SetupError(f"node {node}: service {service.name} waits for port "
                                 f"{service.ready_port!r}, which node_ports did not assign")
            port = ports[service.ready_port]
        wait_ready(self, node, service, port)  # type: ignore[arg-type]

    def stop(self, node: str, service: str | None = None, timeout: float = 5.0) -> None:
        self.procs.stop(node, service, timeout)

    def kill(self, node: str, service: str | None = None) -> None:
        self.procs.kill(node, service)

    def pause(self, node: str, service: str | None = None) -> None:
        self.procs.pause(node, service)

    def resume(self, node: str, service: str | None = None) -> None:
        self.procs.resume(node, service)

    def is_running(self, node: str, service: str | None = None) -> bool:
        return self.procs.is_running(node, service)

    def is_paused(self, node: str, service: str | None = None) -> bool:
        return self.procs.is_paused(node, service)

    def collect_logs(self, node: str, dest_dir: str) -> None:
        self.procs.collect_logs(node, dest_dir)

    def run(self, node: str, command: str, timeout: float = 30.0,
            check: bool = False) -> CommandResult:
        """A shell command on the node's host over SSH, in the node's data dir."""
        d = shlex.quote(self.data_dir(node))
        res = self.procs.session(node).run(f"cd {d} 2>/dev/null; {command}", timeout=timeout,
                                           check=check)
        return CommandResult(res.ok, res.out, res.err, res.rc)

    def check_hosts_binaries(self, nodes: Iterable[str], binaries: Mapping[str, str]) -> None:
        """`command -v` every executable (`test -f` an absolute path) on every node host; one
        SetupError naming the packages."""
        if not binaries:
            return
        # on PATH, or a file at an absolute path (a library a fault preloads)
        probe = "; ".join(f"{{ command -v {shlex.quote(exe)} >/dev/null || "
                          f"test -f {shlex.quote(exe)}; }} || echo {shlex.quote(exe)}"
                          for exe in binaries)
        missing = parallel(lambda n: self.procs.session(n).run(probe, timeout=30).out.split(),
                           list(nodes))
        bad = {n: m for n, m in missing.items() if m}
        if bad:
            hosts = ", ".join(sorted(bad))
            exes = {exe: binaries[exe] for m in bad.values() for exe in m if exe in binaries}
            raise missing_binaries_error(f"host(s) {hosts}", exes)
