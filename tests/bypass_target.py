"""A deliberately broken target for the fault-effect evidence: its nodes ignore their peers.

Two or more nodes, each one process serving a tiny line protocol on its main port ("w k v",
"r k" -> the value, "s" -> status JSON). n1 is the leader and holds the data. Every other
node "discovers" the leader the way Sentinel-like systems do: it reads the port n1 announced
in a file next to the data dirs and keeps a connection to that REAL address, sending
heartbeats, never using the peer address chaos gave it. So a partition on the mesh touches
nothing: the proxied node links carry no traffic and the real connection goes around the mesh.
A run under partition must end unknown (exit 2), never valid.
"""
from __future__ import annotations

import json
import socket
import sys
from collections.abc import Mapping
from typing import Any

from chaos.target import MAIN, BaseTarget, Endpoints, NodeConfig

NODE = r'''
import json, os, socket, sys, threading, time
name, port, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
shared = os.path.dirname(data_dir)
data = {}
srv = socket.create_server(("127.0.0.1", port))
open(os.path.join(shared, name + ".announce"), "w").write(str(port))

def serve(conn):
    f = conn.makefile("rwb")
    for line in f:
        parts = line.decode().split()
        if not parts:
            continue
        if parts[0] == "w":
            data[parts[1]] = parts[2]; out = "ok"
        elif parts[0] == "r":
            out = data.get(parts[1], "nil")
        elif parts[0] == "s":
            out = json.dumps({"role": "leader" if name == "n1" else "follower", "term": 1,
                              "leader": "n1"})
        else:
            out = "hb"
        f.write((out + "\n").encode()); f.flush()

def accept():
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()

def follow():  # the bypass: dial the leader's announced REAL port
    path = os.path.join(shared, "n1.announce")
    while True:
        try:
            leader = int(open(path).read())
            with socket.create_connection(("127.0.0.1", leader), timeout=2) as s:
                while True:
                    s.sendall(b"h\n"); s.recv(16); time.sleep(0.2)
        except (OSError, ValueError):
            time.sleep(0.2)

threading.Thread(target=accept, daemon=True).start()
if name != "n1":
    threading.Thread(target=follow, daemon=True).start()
while True:
    time.sleep(1)
'''


def _call(addr: Any, line: str, timeout: float) -> str:
    with socket.create_connection((addr.host, addr.port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(line.encode() + b"\n")
        return s.makefile("rb").readline().decode().strip()


class BypassClient:
    def __init__(self, nodes: Endpoints, timeout: float) -> None:
        self.nodes, self.timeout = nodes, timeout

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        node = op.get("node") or "n1"
        try:
            if op["f"] == "write":
                _call(self.nodes[node], f"w {op['key']} {op['value']}", self.timeout)
                return {"type": "ok", "node": node}
            if op["f"] == "read":
                got = _call(self.nodes[node], f"r {op['key']}", self.timeout)
                return {"type": "ok", "value": None if got == "nil" else int(got), "node": node}
        except OSError as exc:
            return {"type": "info", "error": str(exc)}
        return {"type": "fail", "error": f"unsupported op {op['f']}"}

    def close(self) -> None:
        return None


class BypassTarget(BaseTarget):
    name = "bypass"
    workloads = frozenset({"register"})
    ports: Mapping[str, int] = {MAIN: 7000}

    def start_command(self, node: NodeConfig) -> list[str]:
        return [sys.executable, "-c", NODE, node.name, str(node.listen.port), node.data_dir]

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> BypassClient:
        return BypassClient(nodes, 1.0)

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        return json.loads(_call(endpoints[node], "s", timeout))
