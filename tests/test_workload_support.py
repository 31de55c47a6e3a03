"""Test doubles for the workload runner that worker processes can import cheaply (stdlib
only, no pandas): a real little TCP key-value server, its client and target, and a no-op
target. Not a test module by itself (no tests); lives here so "spawn" workers can unpickle it."""
from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from typing import Any, Iterator, Mapping

from chaos.target import Addr


# -- a real little server: one dict behind a lock, JSON lines over TCP --------------------------
class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        store = self.server.store  # type: ignore[attr-defined]
        lock = self.server.lock  # type: ignore[attr-defined]
        for line in self.rfile:
            op = json.loads(line)
            f, key, value = op["f"], op.get("key"), op.get("value")
            with lock:
                if f == "read":
                    res = {"type": "ok", "value": store.get(key)}
                elif f == "write":
                    store[key] = value
                    res = {"type": "ok"}
                elif f == "cas":
                    ok = store.get(key) == value[0]
                    if ok:
                        store[key] = value[1]
                    res = {"type": "ok" if ok else "fail"}
                elif f == "add":
                    store.setdefault(key, set()).add(value)
                    res = {"type": "ok"}
                elif f == "read-set":
                    res = {"type": "ok", "value": sorted(store.get(key, ()))}
                else:
                    res = {"type": "fail", "error": f"unknown f {f}"}
            self.wfile.write(json.dumps(res).encode() + b"\n")


class KVServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store: dict[Any, Any] = {}
        self.lock = threading.Lock()


@contextlib.contextmanager
def serving() -> Iterator[KVServer]:
    """A KVServer answering on 127.0.0.1 (a thread) until the block ends."""
    srv = KVServer()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


class KVClient:
    """One TCP connection; misbehaves on purpose when told to (options)."""

    def __init__(self, nodes: Mapping[str, Addr], options: Mapping[str, Any]):
        self.nodes = dict(nodes)
        self.options = options
        self.n = 0
        self.socks: dict[str, tuple[socket.socket, Any]] = {}

    def _conn(self, node: str) -> tuple[socket.socket, Any]:
        if node not in self.socks:
            a = self.nodes[node]
            s = socket.create_connection((a.host, a.port), timeout=5)
            self.socks[node] = (s, s.makefile("rb"))
        return self.socks[node]

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        self.n += 1
        if self.options.get("raise_every") and self.n % self.options["raise_every"] == 0:
            raise ConnectionResetError("connection reset by test")
        if self.options.get("hang_every") and self.n % self.options["hang_every"] == 0:
            time.sleep(30)  # a hung client call, on purpose (the op timeout must end it)
        node = op.get("node") or sorted(self.nodes)[0]
        s, rf = self._conn(node)
        s.sendall(json.dumps({k: op.get(k) for k in ("f", "key", "value")}).encode() + b"\n")
        res = json.loads(rf.readline())
        res["node"] = node
        return res

    def close(self) -> None:
        for s, rf in self.socks.values():
            rf.close()
            s.close()


class KVTarget:
    name = "kv-test"

    def client(self, nodes: Mapping[str, Addr], options: Mapping[str, Any]) -> KVClient:
        return KVClient(nodes, options)


# the no-op target is part of chaos (chaos.target.NoopTarget); re-exported for older imports
from chaos.target import NoopClient, NoopTarget  # noqa: E402,F401
