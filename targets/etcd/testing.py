"""Local etcd clusters for tests and benchmarks: real etcd processes on 127.0.0.1.

`LocalEtcd(dir, n)` builds each member's argv with `cluster.etcd_service` from a NodeConfig
(as the runtimes will), starts it in its own process group, and can kill (SIGKILL), pause
(SIGSTOP), resume and restart (NodeConfig.restart True, same data dir) any member. No faults
of the network: a test of etcd under partitions goes through `chaos run` and the mesh.
Everything started is killed in `close()`, which is idempotent.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.target import MAIN, Addr, Endpoints, NodeConfig

from .cluster import etcd_service, member_status


def _port() -> int:
    from chaos.runtime.local import node_port

    return node_port()


class LocalEtcd:
    """n etcd members as local processes; `endpoints` are their real addresses."""

    def __init__(self, root: Path, n: int = 3, **service_kw: Any):
        self.root = Path(root)
        self.names = [f"n{i + 1}" for i in range(n)]
        self.ports = {name: {MAIN: _port(), "peer": _port()} for name in self.names}
        self.service_kw = service_kw
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoints = Endpoints({n: {k: Addr("127.0.0.1", p) for k, p in ports.items()}
                                    for n, ports in self.ports.items()})

    def config(self, name: str, restart: bool = False) -> NodeConfig:
        addrs = {n: {k: Addr("127.0.0.1", p) for k, p in ports.items()}
                 for n, ports in self.ports.items()}
        return NodeConfig(
            name=name, listen=addrs[name][MAIN], advertise=addrs[name][MAIN],
            peers={n: a[MAIN] for n, a in addrs.items() if n != name},
            data_dir=str(self.root / name), ports=dict(self.ports[name]),
            peer_ports={n: a for n, a in addrs.items() if n != name},
            advertise_ports=addrs[name], restart=restart, nodes=tuple(self.names))

    def start(self, name: str, restart: bool = False) -> None:
        cfg = self.config(name, restart)
        os.makedirs(cfg.data_dir, exist_ok=True)
        svc = etcd_service(cfg, **self.service_kw)
        with open(os.path.join(cfg.data_dir, f"{svc.name}.out"), "ab") as out:
            self.procs[name] = subprocess.Popen(svc.argv, cwd=cfg.data_dir, stdout=out,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_all(self) -> LocalEtcd:
        for name in self.names:
            self.start(name)
        return self

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(10)

    def pause(self, name: str) -> None:
        self.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.signal(name, signal.SIGCONT)

    def status(self, name: str, timeout: float = 1.0) -> dict[str, Any]:
        return member_status(self.endpoints.port(name, MAIN), timeout)

    def wait(self, cond: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
        """Poll `cond` until it returns something truthy (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                got = cond()
                if got:
                    return got
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what or cond}: last error {last!r}; "
                           f"logs in {self.root}")

    def leader(self, among: list[str] | None = None) -> str | None:
        """The member every asked member names as leader, once they agree (else None)."""
        seen = set()
        for name in among or self.names:
            seen.add(self.status(name)["leader"])
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def close(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                self.signal(name, signal.SIGCONT)
                self.signal(name, signal.SIGKILL)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
