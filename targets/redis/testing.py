"""A local Redis + Sentinel cluster of real processes for tests and benchmarks, started from
RedisTarget.services() exactly as a runtime would (files written, argv run in the data dir,
own process group, output to <data_dir>/<service>.out, readiness by TCP connect).

It is a stand-in for `chaos run` where only the target is under test; everything it starts is
killed in `close()` (idempotent).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from chaos.target import MAIN, Addr, Endpoints, NodeConfig

from .conf import SENTINEL
from .plugin import RedisTarget


def node_port() -> int:
    from chaos.runtime.local import node_port as pick

    return pick()


def wait_port(addr: Addr, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((addr.host, addr.port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class LocalCluster:
    """n nodes n1..nN on 127.0.0.1 with free ports; `procs[node][service]` are Popen objects."""

    def __init__(self, n: int, base_dir: str | Path, options: Mapping[str, str] | None = None):
        self.target = RedisTarget()
        self.options = self.target.validate_options(dict(options or {}))
        self.nodes = tuple(f"n{i}" for i in range(1, n + 1))
        self.base = Path(base_dir)
        self.ports = {nd: {MAIN: node_port(), SENTINEL: node_port()} for nd in self.nodes}
        self.endpoints = Endpoints({nd: {k: Addr("127.0.0.1", p) for k, p in ps.items()}
                                    for nd, ps in self.ports.items()})
        self.procs: dict[str, dict[str, subprocess.Popen[bytes]]] = {}

    def config(self, node: str, restart: bool = False) -> NodeConfig:
        ports = self.ports[node]
        return NodeConfig(
            name=node, listen=Addr("127.0.0.1", ports[MAIN]),
            advertise=Addr("127.0.0.1", ports[MAIN]),
            peers={p: self.endpoints[p] for p in self.nodes if p != node},
            data_dir=str(self.base / node), options=dict(self.options), ports=dict(ports),
            peer_ports={p: dict(self.endpoints.ports[p]) for p in self.nodes if p != node},
            advertise_ports=dict(self.endpoints.ports[node]), restart=restart,
            nodes=self.nodes)

    def start(self, node: str, restart: bool = False, ready_timeout: float = 20.0) -> None:
        cfg = self.config(node, restart)
        os.makedirs(cfg.data_dir, exist_ok=True)
        self.procs[node] = {}
        for svc in self.target.services(cfg):
            for path, text in svc.files.items():
                Path(path if os.path.isabs(path) else os.path.join(cfg.data_dir, path)
                     ).write_text(text)
            out = open(os.path.join(cfg.data_dir, f"{svc.name}.out"), "ab")
            self.procs[node][svc.name] = subprocess.Popen(
                svc.argv, cwd=cfg.data_dir, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **svc.env})
            out.close()
            if svc.ready_port and not wait_port(self.endpoints.port(node, svc.ready_port),
                                                min(ready_timeout, svc.ready_timeout)):
                raise RuntimeError(f"{node}/{svc.name} not ready: "
                                   f"{self.output(node, svc.name)[-500:]}")

    def start_all(self, healthy_timeout: float = 60.0) -> "LocalCluster":
        """Start every node; return once n1 has every replica online and every Sentinel
        knows them all (so a test's first WAIT or failover does not race the start).

        Usually ~2.5 s. The deadline is generous: a Sentinel learns the replicas from the
        master's INFO, which it refreshes every 10 s, so a replica not yet online at one
        refresh (a slow full sync on a busy CI machine) is seen a refresh later; once a CI
        run went past 20 s."""
        for node in self.nodes:
            self.start(node)
        deadline = time.monotonic() + healthy_timeout
        while (why := self.unhealthy()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not healthy in {healthy_timeout} s: {why}")
            time.sleep(0.1)
        return self

    def healthy(self) -> bool:
        return self.unhealthy() is None

    def unhealthy(self) -> str | None:
        """Why the cluster is not ready yet (see `start_all`), None once it is."""
        from .client import MASTER_NAME, call, info, pairs

        want = len(self.nodes) - 1
        try:
            rep = info(call(self.endpoints["n1"], 1.0, "INFO", "replication"))
            online = sum(1 for k, v in rep.items() if k.startswith("slave") and "online" in v)
            if online < want:
                return f"n1 has {online} of {want} replicas online"
            for n in self.nodes:
                m = pairs(call(self.endpoints.port(n, SENTINEL), 1.0, "SENTINEL", "MASTER",
                               MASTER_NAME))
                if min(int(m.get("num-slaves", 0)),
                       int(m.get("num-other-sentinels", 0))) < want:
                    return (f"{n}'s Sentinel knows {m.get('num-slaves')} replicas and "
                            f"{m.get('num-other-sentinels')} other Sentinels of {want}")
        except Exception as exc:  # noqa: BLE001 - not up yet
            return f"not answering yet ({exc})"
        return None

    def role(self, node: str) -> str | None:
        """The node's status role, or None while it does not answer."""
        try:
            return str(self.status(node)["role"])
        except Exception:  # noqa: BLE001
            return None

    def output(self, node: str, service: str) -> str:
        try:
            return (self.base / node / f"{service}.out").read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, node: str, sig: int) -> None:
        for p in self.procs.get(node, {}).values():
            if p.poll() is None:
                os.killpg(p.pid, sig)

    def kill(self, node: str) -> None:
        """SIGKILL every process of the node (the whole node, as the runtimes do)."""
        self.signal(node, signal.SIGKILL)
        for p in self.procs.get(node, {}).values():
            p.wait(5)

    def status(self, node: str) -> dict[str, Any]:
        return self.target.status(node, self.endpoints, 1.0)

    def client(self, **options: Any) -> Any:
        return self.target.client(self.endpoints, {**self.options, **options})

    def close(self) -> None:
        for node in self.procs:
            for p in self.procs[node].values():
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(5)
        self.procs.clear()

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
