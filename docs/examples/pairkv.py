"""pairkv: a small primary/backup key-value store, written as a third-party chaos target.

The worked example of docs/targets.md. One file holds both halves:

- the target (class PairKvTarget, used by the controller): how to run a node, how to ask a
  node for its status, and a client for the register and set workloads;
- the node programs (run on each node as `python pairkv.py data|agent pairkv.json`): a data
  server (the store) and a sidecar agent (failure detection, failover, status). They use only
  the standard library, and the file ships itself to every node through Service.files.

A node therefore has TWO services: "data" (port "main") and "agent" (port "agent").
Replication is primary/backup: the primary applies a write, sends it to every backup it can
reach (best effort, no quorum) and acknowledges. An agent that cannot see the primary for
`failover_ms` promotes its own node (new epoch) when it is the lowest-named node of a
majority it can see; a primary whose agent loses the majority steps down. There is no
fencing, so a partition can lose acknowledged writes: chaos should find that (a control).

Run it:  chaos run --target docs/examples/pairkv.py --workload set --nemesis kill,partition
"""
from __future__ import annotations

import json
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# -- the wire: one JSON object per line, both ways (shared by nodes, client and status) ------


def call(addr: tuple[str, int], request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One request on a fresh connection; raises OSError when the node does not answer."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the reply")
            buf += chunk
    return json.loads(buf)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            for line in self.rfile:
                try:
                    reply = self.server.node.handle(json.loads(line))  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 - a bad request must not kill the server
                    reply = {"type": "fail", "error": f"{type(exc).__name__}: {exc}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass  # the peer went away (a reset by a partition): nothing to answer


def serve(node: Any, host: str, port: int) -> None:
    server = socketserver.ThreadingTCPServer((host, port), _Handler, bind_and_activate=False)
    server.allow_reuse_address = True
    server.daemon_threads = True
    server.node = node  # type: ignore[attr-defined]
    server.server_bind()
    server.server_activate()
    server.serve_forever()


# -- node program 1: the data server -------------------------------------------------------


class DataServer:
    """The store. State survives a kill in state.json (written before each acknowledgement)."""

    def __init__(self, conf: dict[str, Any]):
        self.name = conf["name"]
        self.peers = {n: (h, p) for n, (h, p) in conf["data_peers"].items()}
        self.path = Path("state.json")  # the service runs in its data dir
        self.lock = threading.Lock()
        first = sorted(conf["nodes"])[0]
        self.state: dict[str, Any] = {"role": "primary" if self.name == first else "backup",
                                      "epoch": 1, "primary": first, "kv": {}, "sets": {}}
        if conf["restart"] and self.path.exists():
            self.state = json.loads(self.path.read_text())
            self.state.update(role="backup")  # back from a crash: the agent finds the primary
        print(f"pairkv data {self.name} start restart={conf['restart']} "
              f"epoch={self.state['epoch']}", flush=True)

    def _persist(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)

    def _apply(self, f: str, key: str, value: Any) -> None:
        if f == "write":
            self.state["kv"][key] = value
        elif f == "add":
            members = self.state["sets"].setdefault(key, [])
            if value not in members:
                members.append(value)

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op, key, value = req["op"], req.get("key"), req.get("value")
        st = self.state
        with self.lock:
            if op == "state":
                return {"type": "ok", "value": {k: st[k] for k in ("role", "epoch", "primary")}}
            if op == "role":  # from the agent: promote, demote, follow
                if req["epoch"] >= st["epoch"]:
                    st.update(role=req["role"], epoch=req["epoch"], primary=req["primary"])
                    self._persist()
                return {"type": "ok"}
            if op == "apply":  # from the primary: replicate one change
                if req["epoch"] < st["epoch"]:
                    return {"type": "fail", "error": "stale epoch"}
                st["epoch"] = req["epoch"]
                self._apply(req["f"], key, value)
                self._persist()
                return {"type": "ok"}
            if op in ("read", "read-set") and req.get("local"):  # a per-node final read
                return self._read(op, key)
            if st["role"] != "primary":
                return {"type": "fail", "error": "not primary", "primary": st["primary"]}
            if op in ("read", "read-set"):
                return self._read(op, key)
            if op == "cas":
                expected, new = value
                if st["kv"].get(key) != expected:
                    return {"type": "fail", "error": "cas mismatch"}
                op, value = "write", new
            if op not in ("write", "add"):
                return {"type": "fail", "error": f"unknown op {op!r}"}
            self._apply(op, key, value)
            self._persist()
            change = {"op": "apply", "f": op, "key": key, "value": value, "epoch": st["epoch"]}
        for addr in self.peers.values():  # best effort, outside the lock
            try:
                call(addr, change, 0.3)
            except OSError:
                pass
        return {"type": "ok"}

    def _read(self, op: str, key: str) -> dict[str, Any]:
        if op == "read":
            return {"type": "ok", "value": self.state["kv"].get(key)}
        return {"type": "ok", "value": sorted(self.state["sets"].get(key, []))}


# -- node program 2: the agent (sidecar) ---------------------------------------------------


class Agent:
    """Watches the other agents, fails over, and answers the controller's status requests."""

    def __init__(self, conf: dict[str, Any]):
        self.name = conf["name"]
        self.nodes = sorted(conf["nodes"])
        self.data = ("127.0.0.1", conf["data_port"])
        self.peers = {n: (h, p) for n, (h, p) in conf["agent_peers"].items()}
        self.window = conf["failover_ms"] / 1000.0
        self.seen: dict[str, float] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.primary_seen = time.monotonic()
        self.majority_seen = time.monotonic()
        print(f"pairkv agent {self.name} start restart={conf['restart']}", flush=True)

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        local = call(self.data, {"op": "state"}, 0.5)["value"]
        if req["op"] == "view":
            return {"type": "ok", "value": local}
        if req["op"] == "status":  # the contract's keys: role, term, leader
            role = "leader" if local["role"] == "primary" else "follower"
            return {"type": "ok", "value": {"role": role, "term": local["epoch"],
                                            "leader": local["primary"], "agent": self.name}}
        return {"type": "fail", "error": f"unknown op {req['op']!r}"}

    def tick(self) -> None:
        now = time.monotonic()
        mine = call(self.data, {"op": "state"}, 0.5)["value"]
        for peer, addr in self.peers.items():
            try:
                self.views[peer] = call(addr, {"op": "view"}, 0.3)["value"]
                self.seen[peer] = now
            except (OSError, ValueError, KeyError):
                pass
        live = [p for p, t in self.seen.items() if now - t < self.window]
        if (len(live) + 1) * 2 > len(self.nodes):
            self.majority_seen = now
        claims = [(v["epoch"], p) for p, v in self.views.items()
                  if p in live and v["role"] == "primary"]
        if mine["role"] == "primary":
            self.primary_seen = now
            if now - self.majority_seen > self.window:  # cut off: step down
                self._set("backup", mine["epoch"], None)
        if claims:
            epoch, primary = max(claims)
            self.primary_seen = now
            if epoch >= mine["epoch"] and (mine["role"] != "backup"
                                           or mine["primary"] != primary):
                self._set("backup", epoch, primary)
        elif (mine["role"] != "primary" and now - self.primary_seen > self.window
              and now - self.majority_seen < self.window
              and self.name == min([self.name, *live])):
            known = [mine["epoch"], *(v["epoch"] for v in self.views.values())]
            self._set("primary", max(known) + 1, self.name)

    def _set(self, role: str, epoch: int, primary: str | None) -> None:
        call(self.data, {"op": "role", "role": role, "epoch": epoch, "primary": primary}, 0.5)
        print(f"agent {self.name}: {role} epoch {epoch} primary {primary}", flush=True)

    def loop(self) -> None:
        while True:
            try:
                self.tick()
            except (OSError, ValueError, KeyError):
                pass  # our data server is down or slow: try again
            time.sleep(0.1)


def main(argv: list[str]) -> None:
    """`pairkv.py data|agent CONFIG.json`: run one service of a node in the foreground."""
    kind, conf = argv[0], json.loads(Path(argv[1]).read_text())
    if kind == "data":
        serve(DataServer(conf), conf["listen"][0], conf["listen"][1])
    else:
        agent = Agent(conf)
        threading.Thread(target=agent.loop, daemon=True).start()
        serve(agent, conf["listen"][0], conf["agent_port"])


if __name__ == "__main__":  # on a node; importing this file (the controller) runs nothing
    main(sys.argv[1:])


# -- the target: what the controller uses --------------------------------------------------

from chaos.target import MAIN, BaseTarget, Endpoints, NodeConfig, OptionSpec, Service  # noqa: E402

AGENT = "agent"


class PairKvClient:
    """Talks to the primary; a final read names its node and reads that node's own state."""

    def __init__(self, endpoints: Endpoints, timeout: float):
        self.endpoints = endpoints
        self.timeout = timeout
        self.primary: str | None = None

    def _find_primary(self) -> str | None:
        claims = []
        for node in self.endpoints:
            try:
                st = call(_tuple(self.endpoints[node]), {"op": "state"}, self.timeout)["value"]
            except (OSError, ValueError, KeyError):
                continue
            if st["role"] == "primary":
                claims.append((st["epoch"], node))
        return max(claims)[1] if claims else None

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        f = op["f"]
        reading = f in ("read", "read-set")
        request = {"op": f, "key": op.get("key"), "value": op.get("value")}
        node = op.get("node")
        if node is not None:
            request["local"] = True
        else:
            node = self.primary = self.primary or self._find_primary()
            if node is None:
                return {"type": "fail", "error": "no primary reachable"}
        try:
            reply = call(_tuple(self.endpoints[node]), request, self.timeout)
        except ConnectionRefusedError as exc:  # nothing was sent: the op surely did not happen
            self.primary = None
            return {"type": "fail", "node": node, "error": f"refused: {exc}"}
        except (OSError, ValueError) as exc:  # sent, no answer: it may have happened
            self.primary = None
            return {"type": "fail" if reading else "info", "node": node,
                    "error": f"no answer: {type(exc).__name__}: {exc}"}
        if reply.get("error") == "not primary":
            self.primary = None
        out: dict[str, Any] = {"type": reply["type"], "node": node}
        if reading and reply["type"] == "ok":
            out["value"] = reply["value"]
        if reply.get("error"):
            out["error"] = reply["error"]
        return out

    def close(self) -> None:
        return None


def _tuple(addr: Any) -> tuple[str, int]:
    return (addr.host, addr.port)


class PairKvTarget(BaseTarget):
    """pairkv as a chaos target (see the module doc and docs/targets.md)."""

    name = "pairkv"
    workloads = frozenset({"register", "set"})
    #: the numbers containers and SSH hosts use; the local runtime picks free ports instead
    ports = {MAIN: 7100, AGENT: 7101}
    supports_mesh = True      # every peer address comes from NodeConfig: proxies can sit there
    packages = ()             # python3 is in every node image already
    binaries = {}             # nothing to check on local or SSH hosts beyond python3
    options = {
        "failover_ms": OptionSpec(1000, "how long an agent waits for a silent primary before "
                                  "it fails over (ms)", type=int, min=200, max=60000),
        "timeout": OptionSpec(1.0, "client timeout per request (s)", type=float, min=0.05),
    }

    def services(self, node: NodeConfig) -> list[Service]:
        conf = {
            "name": node.name, "nodes": list(node.nodes), "restart": node.restart,
            "listen": [node.listen.host, node.port(MAIN)], "data_port": node.port(MAIN),
            "agent_port": node.port(AGENT), "failover_ms": node.options["failover_ms"],
            # how THIS node dials each peer: through the mesh's proxies when there is one
            "data_peers": {p: _tuple(node.peer(p, MAIN)) for p in node.nodes if p != node.name},
            "agent_peers": {p: _tuple(node.peer(p, AGENT)) for p in node.nodes
                            if p != node.name},
        }
        files = {"pairkv.py": Path(__file__).read_text(), "pairkv.json": json.dumps(conf)}
        env = {"PAIRKV_NODE": node.name}  # extra environment (the node part needs none)
        argv = [node.python, "pairkv.py"]
        # each service gets the files: a service restarted alone (a kill of one service)
        # rewrites only its own, and must read this start's restart flag
        return [Service("data", argv + ["data", "pairkv.json"], env=env, files=files,
                        ready_port=MAIN),
                Service(AGENT, argv + ["agent", "pairkv.json"], env=env, files=files,
                        ready_port=AGENT)]

    def client(self, endpoints: Endpoints, options: Mapping[str, Any]) -> PairKvClient:
        return PairKvClient(endpoints, float(options.get("timeout", 1.0)))

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        reply = call(_tuple(endpoints.port(node, AGENT)), {"op": "status"}, timeout)
        if reply.get("type") != "ok":
            raise ConnectionError(f"{node}: {reply.get('error')}")
        return reply["value"]
