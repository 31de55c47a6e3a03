"""RedisClient: one logical client process of a Redis + Sentinel cluster (redis-py).

Implements chaos.target.Client as an application using Sentinel does (redis-py's
`Sentinel.master_for`): ask the Sentinels, in turn, for the master of MASTER_NAME, accept the
first answer that names a master Sentinel does not think down, connect to it and keep the
connection until it fails; the Sentinel that answered is asked first next time. Every address
a Sentinel announces is a node's real address; `Endpoints.route` maps it to the
client->node link that reaches that node (a proxy on the transparent mesh).

Following failovers: after any error the next op rediscovers the master; with `refresh_ms` > 0
the client also asks its Sentinel again at most that often (as clients with periodic topology
refresh do) and moves when the answer changed. A client whose preferred Sentinel sits on the
old master's side of a partition keeps writing there: that is the production behaviour that
makes split-brain writes.

Outcome rules (the contract: `fail` only when the op surely did not happen):
- the connection could not even be opened, or no Sentinel named a master: fail;
- an error reply (READONLY from a demoted master, NOREPLICAS under min-replicas-to-write,
  a CAS whose expected value did not match): Redis runs a command atomically or not at all,
  so fail;
- a timeout or a connection lost after the command was sent: info (it may have happened);
- WAIT answering fewer replicas than asked is still an acknowledged write in Redis semantics
  (the master applied it and said so): ok, with meta {"wait_acked": n}.
Reads never change state: any failure of a read is fail.
"""
from __future__ import annotations

import random
import select
import socket
import time
from typing import Any, Mapping

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.target import MAIN, Addr, Endpoints

from .conf import MASTER_NAME, SENTINEL

#: compare-and-set as one atomic script: ARGV = {expected is nil ("1"/"0"), expected, new}
CAS_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if (ARGV[1] == '1' and v == false) or (ARGV[1] == '0' and v == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0
"""
WRITES = ("write", "cas", "add")
READS = ("read", "read-set")


class NotSent(Exception):
    """The command was never sent (no master known, connect refused): it surely did not happen."""


def connect(addr: Addr, timeout: float) -> redis.Connection:
    """An open redis-py connection to addr, no automatic retries (a retried write would hide
    what happened); raises redis.ConnectionError / TimeoutError when it cannot be opened."""
    conn = redis.Connection(host=addr.host, port=addr.port, socket_timeout=timeout,
                            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
                            decode_responses=True)
    conn.connect()
    return conn


def command(conn: redis.Connection, *args: Any) -> Any:
    """Send one command and read its reply (redis-py's protocol parser)."""
    conn.send_command(*args)
    return conn.read_response()


def call(addr: Addr, timeout: float, *args: Any) -> Any:
    """One command on a fresh connection (status polls, Sentinel questions)."""
    conn = connect(addr, timeout)
    try:
        return command(conn, *args)
    finally:
        conn.disconnect()


def pairs(reply: Any) -> dict[str, str]:
    """A flat [k, v, k, v, ...] reply (SENTINEL MASTER/REPLICAS entries) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


def info(text: str) -> dict[str, str]:
    """An INFO section's "key:value" lines as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def usable(flags: str) -> bool:
    """A Sentinel entry that is not (subjectively or objectively) down or disconnected."""
    f = set(flags.split(","))
    return not f & {"s_down", "o_down", "disconnected"}


def _alive(conn: redis.Connection) -> bool:
    """False when the server already closed this idle connection (a restarted node): then a
    fresh one is opened instead of sending a command into a dead socket (an avoidable info)."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except (OSError, ValueError):
        return False


class RedisClient:
    """A chaos.target.Client for the register and set workloads (module doc: the rules)."""

    def __init__(self, endpoints: Endpoints, options: Mapping[str, Any],
                 rng: random.Random | None = None):
        if not len(endpoints):
            raise ValueError("RedisClient needs at least one node")
        self.ep = endpoints
        self.timeout = float(options.get("timeout", 1.0))
        self.read_from = str(options.get("read_from", "master"))
        self.wait_replicas = int(options.get("wait_replicas", 0))
        self.wait_timeout_ms = int(options.get("wait_timeout_ms", 100))
        self.refresh = float(options.get("refresh_ms", 1000)) / 1000.0
        self.rng = rng or random.Random()
        # Sentinels in the order they are asked; a random start spreads clients over them
        names = sorted(endpoints)
        k = self.rng.randrange(len(names))
        self.sentinels = names[k:] + names[:k]
        self.master: Addr | None = None          # the master's real address, as announced
        self.master_node: str | None = None
        self.conn: redis.Connection | None = None
        self.discovered_at = 0.0
        self.reads: dict[str, redis.Connection] = {}

    # --- discovery ------------------------------------------------------------------------

    def ask_sentinels(self) -> Addr:
        """The master's real address per the first Sentinel that names a usable one."""
        problems = []
        for name in list(self.sentinels):
            try:
                m = pairs(call(self.ep.port(name, SENTINEL), self.timeout,
                               "SENTINEL", "MASTER", MASTER_NAME))
            except (redis.RedisError, OSError, KeyError) as exc:
                problems.append(f"sentinel {name}: {type(exc).__name__}: {exc}")
                continue
            flags = m.get("flags", "")
            if "master" not in flags.split(",") or not usable(flags):
                problems.append(f"sentinel {name}: master {m.get('ip')}:{m.get('port')} {flags}")
                continue
            self.sentinels.remove(name)
            self.sentinels.insert(0, name)
            return Addr(m["ip"], int(m["port"]))
        raise NotSent("no Sentinel named a usable master: " + "; ".join(problems))

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
        self.conn = None

    def master_conn(self) -> redis.Connection:
        """The connection to the current master: kept while it works, rediscovered after an
        error and (refresh_ms > 0) when a Sentinel now names another master."""
        now = time.monotonic()
        if self.conn is not None and not _alive(self.conn):
            self._drop()
        stale = self.refresh > 0 and now - self.discovered_at >= self.refresh
        master = self.master
        if self.conn is None or master is None or stale:
            try:
                found = self.ask_sentinels()
            except NotSent:
                if self.conn is None or master is None:
                    raise
                found = master                   # a refresh that failed: keep what works
            self.discovered_at = now
            if found != master:
                self._drop()
            master = self.master = found
            hit = self.ep.node_of(master.host, master.port)
            self.master_node = hit[0] if hit else None
        if self.conn is None:
            try:
                self.conn = connect(self.ep.route(master.host, master.port), self.timeout)
            except (redis.RedisError, OSError) as exc:
                self.master = None
                raise NotSent(f"connect to master {self.master_node}: {exc}") from exc
        return self.conn

    # --- the Client protocol -----------------------------------------------------------------

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        f = op["f"]
        if f in READS:
            return self._read(op)
        if f not in WRITES:
            return {"type": "fail", "error": f"unsupported op {f!r}"}
        try:
            conn = self.master_conn()
        except NotSent as exc:
            return {"type": "fail", "error": str(exc)}
        node = self.master_node
        try:
            reply = command(conn, *self._write_args(op))
        except redis.ResponseError as exc:     # READONLY, NOREPLICAS, ...: not executed
            if isinstance(exc, redis.ReadOnlyError):   # a demoted master: rediscover
                self._drop()
                self.master = None
            return {"type": "fail", "node": node, "error": f"{type(exc).__name__}: {exc}"}
        except (redis.RedisError, OSError) as exc:
            self._drop()
            self.master = None
            return {"type": "info", "node": node,
                    "error": f"indeterminate: {type(exc).__name__}: {exc}"}
        if f == "cas" and reply != 1:
            return {"type": "fail", "node": node, "error": "cas: value mismatch"}
        meta: dict[str, Any] = {}
        if self.wait_replicas > 0:
            try:
                meta["wait_acked"] = int(command(conn, "WAIT", self.wait_replicas,
                                                 self.wait_timeout_ms))
            except (redis.RedisError, OSError) as exc:
                self._drop()
                return {"type": "info", "node": node,
                        "error": f"indeterminate: WAIT: {type(exc).__name__}: {exc}"}
        return {"type": "ok", "value": op.get("value"), "node": node, "meta": meta}

    @staticmethod
    def _write_args(op: Mapping[str, Any]) -> list[Any]:
        f, key = op["f"], op.get("key")
        value: Any = op.get("value")
        if f == "add":
            return ["SADD", key, value]
        if f == "write":
            return ["SET", key, value]
        expected, new = value
        return ["EVAL", CAS_SCRIPT, 1, key, "1" if expected is None else "0",
                "" if expected is None else expected, new]

    def _read_target(self, op: Mapping[str, Any]) -> tuple[str | None, Addr]:
        """(node, address) a read goes to: op["node"] itself, else per read_from."""
        node = op.get("node")
        if isinstance(node, str) and node in self.ep:
            return node, self.ep[node]
        if self.read_from == "any":
            node = self.rng.choice(sorted(self.ep))
            return node, self.ep[node]
        if self.read_from == "replica":
            replicas = self._replicas()
            if replicas:
                addr = self.rng.choice(replicas)
                hit = self.ep.node_of(addr.host, addr.port)
                return (hit[0] if hit else None), self.ep.route(addr.host, addr.port)
        self.master_conn()                       # as redis-py: no replica known -> the master
        if self.master is None:
            raise NotSent("no master known")
        return self.master_node, self.ep.route(self.master.host, self.master.port)

    def _replicas(self) -> list[Addr]:
        for name in self.sentinels:
            try:
                entries = call(self.ep.port(name, SENTINEL), self.timeout,
                               "SENTINEL", "REPLICAS", MASTER_NAME)
            except (redis.RedisError, OSError, KeyError):
                continue
            found = [pairs(e) for e in entries]
            return [Addr(e["ip"], int(e["port"])) for e in found if usable(e.get("flags", ""))]
        return []

    def _read(self, op: Mapping[str, Any]) -> dict[str, Any]:
        node: str | None = op.get("node")
        try:
            node, addr = self._read_target(op)
            conn = self.reads.get(str(addr))
            if conn is None or not _alive(conn):
                conn = self.reads[str(addr)] = connect(addr, self.timeout)
            if op["f"] == "read":
                raw = command(conn, "GET", op.get("key"))
                value: Any = None if raw is None else int(raw)
            else:
                value = sorted(int(v) for v in command(conn, "SMEMBERS", op.get("key")))
        except (redis.RedisError, OSError, NotSent, ValueError) as exc:
            for a, c in list(self.reads.items()):
                if not _alive(c):
                    c.disconnect()
                    del self.reads[a]
            return {"type": "fail", "node": node, "error": f"{type(exc).__name__}: {exc}"}
        return {"type": "ok", "value": value, "node": node}

    def close(self) -> None:
        self._drop()
        for c in self.reads.values():
            c.disconnect()
        self.reads.clear()


def status(node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
    """The node's role from INFO replication, plus its Sentinel's view (module doc of plugin).

    Raises when the data node does not answer; a Sentinel that does not answer is recorded
    in "sentinel_error" (the leadership that matters is the data node's)."""
    rep = info(call(endpoints.port(node, MAIN), timeout, "INFO", "replication"))
    out: dict[str, Any] = {"term": None, "redis_role": rep.get("role")}
    if rep.get("role") == "master":
        out.update(role="leader", leader=node,
                   connected_replicas=int(rep.get("connected_slaves", 0)))
    elif rep.get("role") == "slave":
        hit = endpoints.node_of(rep.get("master_host", ""), int(rep.get("master_port", 0) or 0))
        out.update(role="follower", leader=hit[0] if hit else None,
                   master_addr=f"{rep.get('master_host')}:{rep.get('master_port')}",
                   master_link_status=rep.get("master_link_status"))
    else:
        out.update(role="unknown", leader=None)
    out["repl_offset"] = int(rep.get("master_repl_offset", 0) or 0)
    try:
        m = pairs(call(endpoints.port(node, SENTINEL), timeout, "SENTINEL", "MASTER", MASTER_NAME))
        hit = endpoints.node_of(m.get("ip", ""), int(m.get("port", 0) or 0))
        out["sentinel_master"] = hit[0] if hit else f"{m.get('ip')}:{m.get('port')}"
        out["sentinel_epoch"] = int(m.get("config-epoch", 0) or 0)
        out["sentinel_flags"] = m.get("flags")
    except (redis.RedisError, OSError, KeyError, ValueError) as exc:
        out["sentinel_error"] = f"{type(exc).__name__}: {exc}"
    return out


def converged(endpoints: Endpoints, timeout: float) -> bool:
    """True when exactly one node is a master and every other one replicates it, link up,
    at the master's replication offset (so every node's reads show the same data)."""
    reps = {}
    for node in endpoints:
        try:
            reps[node] = info(call(endpoints.port(node, MAIN), timeout, "INFO", "replication"))
        except (redis.RedisError, OSError):
            return False
    masters = [n for n, r in reps.items() if r.get("role") == "master"]
    if len(masters) != 1:
        return False
    offset = reps[masters[0]].get("master_repl_offset")
    for node, r in reps.items():
        if node == masters[0]:
            continue
        hit = endpoints.node_of(r.get("master_host", ""), int(r.get("master_port", 0) or 0))
        if (r.get("role") != "slave" or not hit or hit[0] != masters[0]
                or r.get("master_link_status") != "up"
                or r.get("slave_repl_offset") != offset):
            return False
    return True
