"""Runtimes: where nodes live and how they are controlled (Jepsen's `control` + `os`).

A node is one or more named services (chaos.target.Service). A runtime starts each service's
foreground command as a daemon it owns, in the service's own process group, with its output
in `<data_dir>/<service>.out`, and stops, kills (SIGKILL), pauses (SIGSTOP) and resumes either
one service or the whole node: with `service=None` every process of every service of the node
(its whole process group, children included), the same rule on every runtime.

The run controller (chaos.run) and the net layer (chaos.net) use nothing but this protocol:
no runtime is recognised by its name. Everything a runtime starts it must be able to undo in
`teardown`, which is idempotent and safe to call on a signal path.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chaos.errors import SetupError
from chaos.target import CommandResult, Service

#: what a runtime may offer (Runtime.capabilities)
NAT = "nat"                  # chaos may add iptables rules in each node's own network namespace
OWN_ADDRESS = "own-address"  # each node has its own IP (ports are the target's declared ones)


@dataclass(frozen=True)
class ProxyPlacement:
    """Where the embedded proxy server runs when a runtime hosts it (docker: its own container).

    url:            the proxy API as the controller reaches it (http://ip:port)
    listen_host:    the address proxies bind inside that placement
    advertise_host: the address nodes and the controller dial to reach a proxy
    """

    url: str
    listen_host: str
    advertise_host: str


@runtime_checkable
class Runtime(Protocol):
    """Where the nodes run. Every method is called from the controller."""

    name: str
    #: NAT and/or OWN_ADDRESS (see above)
    capabilities: frozenset[str]

    def setup(self, nodes: list[str], store_dir: str) -> None:
        """Prepare hosts/containers for these node names; node data goes under store_dir."""
        ...

    def host(self, node: str) -> str:
        """The node's real address, as other nodes and the controller reach it."""
        ...

    def listen_host(self, node: str) -> str:
        """The address a node's services bind (127.0.0.1 locally, 0.0.0.0 elsewhere)."""
        ...

    def node_ports(self, node: str, declared: Mapping[str, int]) -> dict[str, int]:
        """Port name -> number for `node`: the declared numbers where each node has its own
        address, else distinct free ports per node and name (remembered for readiness)."""
        ...

    def data_dir(self, node: str) -> str:
        """The node's data directory on its host (absolute)."""
        ...

    def code_root(self, node: str) -> str:
        """The directory on the node's host that holds the `chaos` and `targets` packages."""
        ...

    def python(self, node: str) -> str:
        """An interpreter on the node's host."""
        ...

    def start(self, node: str, service: Service) -> None:
        """Write the service's files, start it in its own process group (output to
        <data_dir>/<service>.out) and wait until its ready_port accepts connections."""
        ...

    def stop(self, node: str, service: str | None = None, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`. No error when already stopped."""
        ...

    def kill(self, node: str, service: str | None = None) -> None:
        """SIGKILL (a crash); returns once the processes are gone."""
        ...

    def pause(self, node: str, service: str | None = None) -> None:
        """SIGSTOP (freeze without closing sockets)."""
        ...

    def resume(self, node: str, service: str | None = None) -> None:
        """SIGCONT."""
        ...

    def is_running(self, node: str, service: str | None = None) -> bool:
        """service None: is any service of the node running."""
        ...

    def is_paused(self, node: str, service: str | None = None) -> bool:
        """service None: is every running service of the node stopped (and one at least)."""
        ...

    def run(self, node: str, command: str, timeout: float = 30.0) -> CommandResult:
        """A shell command on the node's host, in its data dir."""
        ...

    def collect_logs(self, node: str, dest_dir: str) -> None:
        """Copy the node's data dir files into dest_dir (no-op when they already are there)."""
        ...

    def teardown(self) -> None:
        """Kill everything this runtime started; idempotent."""
        ...

    def check_binaries(self, binaries: Mapping[str, str]) -> None:
        """SetupError naming the Debian package of every executable missing on a node host."""
        ...

    def proxy_server(self) -> ProxyPlacement | None:
        """Run the embedded proxy server where the nodes can reach it, or None: the controller
        runs (or connects to) its own (chaos.net.client.connect_or_start)."""
        ...


def missing_binaries_error(where: str, missing: Mapping[str, str]) -> SetupError:
    """One SetupError for every missing executable, naming the package to install."""
    packages = sorted(set(missing.values()))
    listed = ", ".join(f"{exe} (package {pkg})" for exe, pkg in sorted(missing.items()))
    return SetupError(f"{where}: missing {listed}: apt-get install {' '.join(packages)}")


def wait_ready(rt: Runtime, node: str, service: Service, port: int | None) -> None:
    """Poll host(node):port from the controller until it accepts a connection.

    SetupError naming the node, the service and the tail of its output when the service
    exits first or `service.ready_timeout` passes. `port` None: nothing to wait for.
    """
    if port is None:
        return
    host = rt.host(node)
    deadline = time.monotonic() + service.ready_timeout
    why = f"not accepting connections on {host}:{port} after {service.ready_timeout:g} s"
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        try:
            running = rt.is_running(node, service.name)
        except SetupError:
            running = True  # the runtime could not tell this time: the deadline decides
        if not running:
            why = "exited before it was ready"
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    tail = rt.run(node, f"tail -c 600 {service.name}.out 2>/dev/null", timeout=15).out.strip()
    tail = " | ".join(tail.splitlines()[-6:])
    raise SetupError(f"node {node}: service {service.name} {why}; output "
                     f"({output_path(rt, node, service.name)}): {tail or 'empty'}")


def output_path(rt: Runtime, node: str, service: str) -> str:
    """Where a user finds a service's output after the run: the copy collected into the run
    directory (<store>/nodes/<node>/) when the runtime's own data dir goes away with it (a
    docker container: `stored_logs`), else the file in the node's data dir."""
    stored = getattr(rt, "stored_logs", None)
    if stored:
        return f"{stored}/nodes/{node}/{service}.out"
    return f"{rt.data_dir(node)}/{service}.out"
