"""A deliberately broken target for the fault-effect evidence: its nodes ignore their peers.

Two or more nodes, each one process serving a tiny line protocol on its main port ("w k v",
"r k" -> the value, "s" -> status JSON). n1 is the leader and holds the data. Every other
node "discovers" the leader the way Sentinel-like systems do and keeps a connection to an
address chaos never gave it, sending heartbeats:

- local runtime (nodes bind 127.0.0.1): the port n1 announced in a file next to the data
  dirs, i.e. n1's REAL main port instead of the proxy it was given;
- remote runtimes (nodes bind 0.0.0.0): an undeclared "gossip" port (main + 1) at the host
  of the peer address it was given, which no proxy and no nat rule covers.

So a partition on the mesh touches nothing: the proxied node links carry no traffic and the
real connection goes around the mesh. A run under partition must end unknown, never valid.
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
name, host, data_dir, leader_host = sys.argv[1], sys.argv[2], sys.argv[4], sys.argv[5]
port = int(sys.argv[3])
shared = os.path.dirname(data_dir)
data = {}
srv = socket.create_server((host, port))
# the undeclared port (remote runtimes only: locally main + 1 may be another node's port)
gossip = socket.create_server((host, port + 1)) if host != "127.0.0.1" else None
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

def accept(server):
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()

def follow():  # the bypass
    path = os.path.join(shared, "n1.announce")
    while True:
        try:
            if host == "127.0.0.1":  # local: the leader's announced REAL main port
                addr = ("127.0.0.1", int(open(path).read()))
            else:                     # remote: its undeclared gossip port
                addr = (leader_host, 7001)
            with socket.create_connection(addr, timeout=2) as s:
                while True:
                    s.sendall(b"h\n"); s.recv(16); time.sleep(0.2)
        except (OSError, ValueError):
            time.sleep(0.2)

threading.Thread(target=accept, args=(srv,), daemon=True).start()
if gossip is not None:
    threading.Thread(target=accept, args=(gossip,), daemon=True).start()
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
        leader = node.peers.get("n1", node.listen)
        return [node.python or sys.executable, "-c", NODE, node.name, node.listen.host,
                str(node.listen.port), node.data_dir, leader.host]

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> BypassClient:
        return BypassClient(nodes, 1.0)

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        return json.loads(_call(endpoints[node], "s", timeout))
