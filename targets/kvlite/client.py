"""KvliteClient: one logical client process talking to a kvlite cluster (stdlib only).

Implements chaos.target.Client: `invoke(op)` takes {"f", "key", "value"} and returns the
completion fields {"type", "value", "node", "meta", "error"}.

Routing (client side, the default): try the last known leader, follow "not leader, leader is
X" hints, else cycle through the nodes. A request that was sent and not answered in time is
"info" (it may have reached a leader and happened); "fail" only when the node said the op
surely did not happen (cas mismatch, not leader, lease expired before a read) or no node
could even be connected to. With routing="forward" the client sticks to one node and lets
it forward to the leader. A read naming a node (op["node"], as the final reads of the set
workload do) reads that node's own state, whatever its role.
"""
from __future__ import annotations

import itertools
import json
import random
import select
import socket
import time
from typing import Any, Mapping

_ids = itertools.count(1)


class _Conn:
    """A blocking socket to one node; replies are matched by request id."""

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def alive(self) -> bool:
        """False when the node already closed this connection (so no request is lost on it)."""
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if r and not self.buf:
                self.sock.setblocking(False)
                try:
                    return self.sock.recv(1, socket.MSG_PEEK) != b""
                finally:
                    self.sock.setblocking(True)
            return True
        except (OSError, ValueError):
            return False

    def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        rid = next(_ids)
        msg = dict(msg, id=rid)
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        self.sock.sendall((json.dumps(msg, separators=(",", ":")) + "\n").encode())
        while True:
            nl = self.buf.find(b"\n")
            while nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                reply = json.loads(line)
                if reply.get("id") == rid:
                    return reply
                nl = self.buf.find(b"\n")    # a late reply to an earlier request: skip
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed by node")
            self.buf += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class KvliteClient:
    """A chaos.target.Client for the register and set workloads."""

    def __init__(self, nodes: Mapping[str, Any], timeout: float = 1.0, routing: str = "client",
                 prefer: str | None = None, read_from: str = "leader"):
        self.nodes = {n: _addr(a) for n, a in nodes.items()}
        if not self.nodes:
            raise ValueError("KvliteClient needs at least one node")
        self.names = sorted(self.nodes)
        self.timeout = timeout
        self.routing = routing
        #: "any": reads go to a random node (that is the point of reading from followers)
        self.read_from = read_from
        self._rng = random.Random()
        self.leader = prefer if prefer in self.nodes else self.names[0]
        self.conns: dict[str, _Conn] = {}

    # --- plumbing -----------------------------------------------------------------------

    def _conn(self, name: str) -> _Conn:
        c = self.conns.get(name)
        if c is not None and not c.alive():
            self._drop(name)
            c = None
        if c is None:
            host, port = self.nodes[name]
            c = self.conns[name] = _Conn(host, port, self.timeout)
        return c

    def _drop(self, name: str) -> None:
        c = self.conns.pop(name, None)
        if c is not None:
            c.close()

    def request(self, name: str, msg: dict[str, Any],
                timeout: float | None = None) -> dict[str, Any]:
        """One raw request to one node (status and admin calls); raises OSError on no answer."""
        try:
            return self._conn(name).request(msg, timeout or self.timeout)
        except (OSError, ValueError):
            self._drop(name)
            raise

    # --- the Client protocol ------------------------------------------------------------

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        f = op["f"]
        msg: dict[str, Any] = {"op": f, "key": op.get("key")}
        if f in ("write", "cas", "add"):
            msg["value"] = op.get("value")
        elif f not in ("read", "read-set"):
            return {"type": "fail", "error": f"unsupported op {f!r}"}
        is_read = f in ("read", "read-set")
        if is_read and op.get("node") in self.nodes:
            return self._local_read(op["node"], msg)
        tried: list[str] = []
        last_error = "no node reachable"
        target: str | None = self.leader
        if is_read and self.read_from == "any":
            target = self._rng.choice(self.names)
        for _ in range(2 * len(self.names) + 1):
            if target is None or (target in tried and len(tried) < len(self.names)):
                target = next((n for n in self.names if n not in tried), self.names[0])
            tried.append(target)
            try:
                conn = self._conn(target)
            except OSError as exc:          # never connected: the op surely did not happen
                last_error = f"{target}: connect failed: {exc}"
                target = None
                continue
            try:
                reply = conn.request(msg, self.timeout)
            except (OSError, ValueError) as exc:
                self._drop(target)
                return {"type": "info", "node": target,
                        "error": f"indeterminate: {type(exc).__name__}: {exc}"}
            kind = reply.get("type")
            node = reply.get("node", target)
            if kind == "ok":
                if not (is_read and self.read_from == "any"):
                    self.leader = target
                return {"type": "ok", "value": reply.get("value") if is_read else op.get("value"),
                        "node": node, "meta": {"term": reply.get("term")}}
            if kind == "fail" and reply.get("error") == "not leader" and self.routing == "client":
                last_error = f"{target}: not leader"
                hint = reply.get("leader")
                target = hint if hint in self.nodes and hint != target else None
                if target is not None and tried.count(target) >= 2:
                    target = None
                continue
            if kind == "fail":
                return {"type": "fail", "node": node, "error": reply.get("error")}
            # "error": outcome unknown (writes) or a request the node could not serve
            return {"type": "fail" if is_read else "info", "node": node,
                    "error": reply.get("error")}
        return {"type": "fail", "error": f"no leader found: {last_error}"}

    def _local_read(self, name: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A read of one given node's own state (op["node"]: the final reads after healing)."""
        try:
            reply = self.request(name, dict(msg, local=True))
        except (OSError, ValueError) as exc:
            return {"type": "fail", "node": name, "error": f"{name}: {type(exc).__name__}: {exc}"}
        if reply.get("type") == "ok":
            return {"type": "ok", "value": reply.get("value"), "node": name,
                    "meta": {"term": reply.get("term")}}
        return {"type": "fail", "node": name, "error": reply.get("error")}

    def close(self) -> None:
        for name in list(self.conns):
            self._drop(name)


def call(addr: Any, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One request to one node on a fresh connection (status polls, admin calls); the raw
    reply. Raises OSError when the node does not answer (ValueError on a garbled reply)."""
    conn = _Conn(*_addr(addr), timeout)
    try:
        return conn.request(msg, timeout)
    finally:
        conn.close()


def _addr(a: Any) -> tuple[str, int]:
    """Accept (host, port), "host:port" or an object with .host/.port (chaos.target.Addr)."""
    if isinstance(a, str):
        host, _, port = a.rpartition(":")
        return host, int(port)
    if hasattr(a, "host"):
        return a.host, int(a.port)
    host, port = a
    return host, int(port)
