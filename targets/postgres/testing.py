"""A local Patroni cluster for tests and benchmarks: real etcd, Patroni and PostgreSQL processes.

Runs PostgresTarget's own services (argv, files, user) for n nodes on 127.0.0.1 with free
ports, as a runtime would: each service in its own process group (so a kill takes postgres's
children too), `user` honoured with setpriv, output in <data_dir>/<service>.out. It needs
root (to switch to the `postgres` user) and the Debian packages postgresql, patroni and
etcd-server. `close()` kills every process group it started and removes the data dirs.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from chaos.target import MAIN, Addr, Cluster, CommandResult, Endpoints, NodeConfig, Service

from .plugin import PostgresTarget


def _free_port() -> int:
    from chaos.runtime.local import node_port

    return node_port()


def available() -> str | None:
    """None when a local cluster can run here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root (PostgreSQL runs as the postgres user)"
    for exe in ("patroni", "etcd", "setpriv", "/usr/lib/postgresql/15/bin/postgres"):
        if shutil.which(exe) is None:
            return f"{exe} not installed (apt-get install postgresql patroni etcd-server)"
    return None


class LocalCluster:
    """n Patroni members with their etcd members on 127.0.0.1."""

    def __init__(self, n: int = 3, options: dict[str, str] | None = None):
        self.target = PostgresTarget()
        self.options = self.target.validate_options(options or {})
        self.names = [f"n{i + 1}" for i in range(n)]
        self.root = tempfile.mkdtemp(prefix="chaos-pg-")
        os.chmod(self.root, 0o755)
        self.ports = {n: {name: _free_port() for name in self.target.ports} for n in self.names}
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        for node in self.names:
            os.makedirs(self.data_dir(node))
        self.endpoints = Endpoints({n: {p: Addr("127.0.0.1", port) for p, port in ps.items()}
                                    for n, ps in self.ports.items()})

    def data_dir(self, node: str) -> str:
        return os.path.join(self.root, node)

    def node_config(self, node: str, restart: bool = False) -> NodeConfig:
        ports = self.ports[node]
        return NodeConfig(
            name=node, listen=Addr("127.0.0.1", ports[MAIN]),
            peers={p: self.endpoints[p] for p in self.names if p != node},
            data_dir=self.data_dir(node), options=dict(self.options),
            advertise=Addr("127.0.0.1", ports[MAIN]), ports=dict(ports),
            peer_ports={p: dict(self.endpoints.ports[p]) for p in self.names if p != node},
            advertise_ports={k: Addr("127.0.0.1", v) for k, v in ports.items()},
            restart=restart, nodes=tuple(self.names))

    def cluster(self) -> Cluster:
        """The hooks' view of this cluster."""
        return Cluster(nodes=list(self.names), endpoints=self.endpoints,
                       options=dict(self.options), run=self._run, data_dir=self.data_dir)

    def _run(self, node: str, command: str, timeout: float) -> CommandResult:
        p = subprocess.run(command, shell=True, capture_output=True, text=True,
                           timeout=timeout, cwd=self.data_dir(node))
        return CommandResult(p.returncode == 0, p.stdout, p.stderr, p.returncode)

    # --- processes -----------------------------------------------------------------------

    def _start(self, node: str, service: Service) -> None:
        ddir = self.data_dir(node)
        for path, text in service.files.items():
            full = path if os.path.isabs(path) else os.path.join(ddir, path)
            with open(full, "w") as fh:
                fh.write(text)
        argv = list(service.argv)
        if service.user:
            shutil.chown(ddir, service.user, service.user)
            for path in service.files:
                shutil.chown(os.path.join(ddir, path), service.user, service.user)
            argv = ["setpriv", f"--reuid={service.user}", f"--regid={service.user}",
                    "--init-groups", "--", *argv]
        out = open(os.path.join(ddir, f"{service.name}.out"), "ab")
        self.procs[(node, service.name)] = subprocess.Popen(
            argv, cwd=ddir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **service.env}, start_new_session=True)
        out.close()
        if service.ready_port:
            self._wait_port(node, service)

    def _wait_port(self, node: str, service: Service) -> None:
        addr = self.endpoints.port(node, str(service.ready_port))
        deadline = time.monotonic() + service.ready_timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((addr.host, addr.port), timeout=0.5).close()
                return
            except OSError:
                if self.procs[(node, service.name)].poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"{node}/{service.name} not ready on {addr}: "
                           f"{self.tail(node, service.name)}")

    def tail(self, node: str, service: str, lines: int = 15) -> str:
        try:
            with open(os.path.join(self.data_dir(node), f"{service}.out"), errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""

    def start_node(self, node: str, restart: bool = False) -> None:
        for service in self.target.services(self.node_config(node, restart)):
            self._start(node, service)

    def start(self) -> "LocalCluster":
        """Start every node's services (etcd everywhere first: the DCS needs a quorum)."""
        services = {n: self.target.services(self.node_config(n)) for n in self.names}
        for node in self.names:
            self._start(node, services[node][0])
        for node in self.names:
            for service in services[node][1:]:
                self._start(node, service)
        return self

    def signal(self, node: str, sig: int) -> None:
        """Send `sig` to every process group of `node` (all its services and their children)."""
        for (n, _), proc in self.procs.items():
            if n == node and proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def kill(self, node: str) -> None:
        self.signal(node, signal.SIGKILL)
        for (n, _), proc in list(self.procs.items()):
            if n == node:
                proc.wait(timeout=10)

    def close(self) -> None:
        for node in self.names:
            self.signal(node, signal.SIGCONT)
            self.signal(node, signal.SIGKILL)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # postgres's own children were in the group too; wait for their sockets to go
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
