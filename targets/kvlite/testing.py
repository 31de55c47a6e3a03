"""Local kvlite clusters for tests and benchmarks: real processes, real sockets.

`Cluster` starts one `python -m targets.kvlite.server` process per node on 127.0.0.1 (free
ports), optionally with every directed peer link a->b going through its own `Forwarder`, a
tiny TCP relay that can be cut (blackholed: connections stay open, bytes are dropped) and
healed. That is enough to isolate a leader without the Toxiproxy mesh. Clients connect to
the nodes directly, so an isolated leader is still reachable by clients (the split-brain
case). Everything started is killed in `close()`, which is idempotent.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .client import KvliteClient, call

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A node port outside the ephemeral range, so the forwarders' bind(0) cannot take it."""
    from chaos.runtime.local import node_port

    return node_port()


class Forwarder:
    """A cuttable TCP relay to 127.0.0.1:`upstream`, served on a background event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, upstream: int):
        self.loop = loop
        self.upstream = upstream
        self.cut = False
        self.delay = 0.0                      # seconds added to every chunk (latency)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            w.close()
            return
        self._writers |= {w, uw}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def deliver() -> None:
                while True:
                    due, data = await queue.get()
                    wait = due - self.loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not self.cut:          # blackholed: swallow the bytes
                        dst.write(data)
                        await dst.drain()
            sender = asyncio.ensure_future(deliver())
            try:
                while data := await src.read(1 << 16):
                    queue.put_nowait((self.loop.time() + self.delay, data))
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                while not queue.empty() and not sender.done():
                    await asyncio.sleep(0.01)
                sender.cancel()
                dst.close()
        await asyncio.gather(pipe(r, uw), pipe(ur, w))
        self._writers -= {w, uw}

    def set_cut(self, cut: bool) -> None:
        """Cut: drop every byte. Heal: resume, and reset the connections that lost bytes."""
        def apply() -> None:
            was, self.cut = self.cut, cut
            if was and not cut:
                for w in list(self._writers):
                    w.close()
        self.loop.call_soon_threadsafe(apply)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()


class Cluster:
    """N kvlite nodes on 127.0.0.1 under `base_dir`; use as a context manager."""

    def __init__(self, base_dir: str | Path, n: int = 3, mesh: bool = False,
                 options: dict[str, Any] | None = None, start: list[str] | None = None):
        self.base = Path(base_dir)
        self.names = [f"n{i}" for i in range(1, n + 1)]
        self.ports = {name: free_port() for name in self.names}
        self.options = {"heartbeat_ms": 50, "election_timeout_ms": 400,
                        "initial_leader": "n1", **(options or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.forwarders: dict[tuple[str, str], Forwarder] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        try:
            if mesh:
                self._start_mesh()
            for name in (self.names if start is None else start):
                self.start(name)
            for name in (self.names if start is None else start):
                self.wait_up(name)
        except BaseException:
            self.close()            # nothing started may outlive a failed start-up
            raise

    # --- mesh ---------------------------------------------------------------------------

    def _start_mesh(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        for a in self.names:
            for b in self.names:
                if a != b:
                    fw = Forwarder(self._loop, self.ports[b])
                    asyncio.run_coroutine_threadsafe(fw.start(), self._loop).result(5)
                    self.forwarders[(a, b)] = fw

    def peer_port(self, a: str, b: str) -> int:
        fw = self.forwarders.get((a, b))
        return fw.port if fw else self.ports[b]

    def isolate(self, node: str) -> None:
        """Cut every link from and to `node` (both directions)."""
        for (a, b), fw in self.forwarders.items():
            if node in (a, b):
                fw.set_cut(True)

    def set_latency(self, a: str, b: str, seconds: float) -> None:
        """Delay every byte on the link a->b (both directions of its connections)."""
        fw = self.forwarders[(a, b)]
        self._loop.call_soon_threadsafe(setattr, fw, "delay", seconds)  # type: ignore[union-attr]

    def heal(self) -> None:
        for fw in self.forwarders.values():
            fw.set_cut(False)

    # --- processes ----------------------------------------------------------------------

    def argv(self, name: str) -> list[str]:
        o = self.options
        argv = [sys.executable, "-m", "targets.kvlite.server", "--name", name,
                "--listen", f"127.0.0.1:{self.ports[name]}", "--data-dir", str(self.base / name)]
        for p in self.names:
            if p != name:
                argv += ["--peer", f"{p}=127.0.0.1:{self.peer_port(name, p)}"]
        for k, v in o.items():
            if v is not None:
                argv += [f"--{k.replace('_', '-')}", str(v)]
        return argv

    def start(self, name: str) -> None:
        (self.base / name).mkdir(parents=True, exist_ok=True)
        out = open(self.base / name / "stdout.log", "ab")
        self.procs[name] = subprocess.Popen(self.argv(name), cwd=REPO, stdout=out, stderr=out,
                                            start_new_session=True)
        out.close()

    def wait_up(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.status(name)
            except OSError:
                if time.monotonic() > deadline or self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} did not come up; see {self.base / name}")
                time.sleep(0.05)

    def kill(self, name: str) -> None:
        p = self.procs.get(name)
        if p and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)

    def pause(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGCONT)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)
        self.wait_up(name)

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        if self._loop is not None:
            for fw in self.forwarders.values():
                asyncio.run_coroutine_threadsafe(fw.stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(5)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- talking to nodes ---------------------------------------------------------------

    def addrs(self) -> dict[str, tuple[str, int]]:
        return {n: ("127.0.0.1", p) for n, p in self.ports.items()}

    def client(self, **kw: Any) -> KvliteClient:
        return KvliteClient(self.addrs(), **kw)

    def call(self, name: str, msg: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """One request to one node on a fresh connection; OSError when it does not answer."""
        return call(("127.0.0.1", self.ports[name]), msg, timeout)

    def status(self, name: str, timeout: float = 1.0) -> dict[str, Any]:
        return self.call(name, {"op": "status"}, timeout)["value"]

    def leaders(self, names: list[str] | None = None) -> list[str]:
        out = []
        for n in names or self.names:
            try:
                if self.status(n, 0.5)["role"] == "leader":
                    out.append(n)
            except OSError:
                pass
        return out

    def wait_for(self, pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = pred()
            except OSError:
                v = None
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)
