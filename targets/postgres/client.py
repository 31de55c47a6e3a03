"""PostgresClient: one logical client process, connected as applications connect (psycopg 3).

Routing: libpq's own failover, a multi-host connection string over the client->node links
with target_session_attrs=read-write. That is how applications reach a Patroni cluster
without a proxy in front (HAProxy + the REST API's /primary health check is the other
common way; it adds a component chaos would then have to test too). libpq asks each host
in turn whether it accepts writes, so after a failover the next connection lands on the new
primary; until an isolated old primary demotes itself, clients still connected to it keep
writing there, which is exactly the asynchronous-replication window the tests look for.

Reads go to the same read-write session (read_from=primary) or to a random node of any role
(read_from=any: standbys serve reads, stale by design). An op naming a node (op["node"], the
final reads) reads that node's own data whatever its role.

Outcomes (the contract's rule: "fail" only when the op surely did not happen):
- no connection could be made (before any statement was sent): fail;
- the server rejected the statement with an error of a class that aborts before commit
  (read-only transaction, serialization failure, deadlock, constraint, data or syntax
  error): fail; a cas whose WHERE matched no row: fail;
- anything else after the statement was sent (connection lost, the server shutting down,
  no answer within `timeout`): info. A COMMIT whose reply is lost may have happened.

A statement that takes longer than `timeout` is not cancelled (a cancelled wait for a
synchronous standby makes PostgreSQL report the commit as done, with only a WARNING): the
client shuts the socket down instead, so the op is info and the connection is replaced.
"""
from __future__ import annotations

import os
import random
import select
import socket
import threading
from typing import Any, Mapping

from chaos.target import Addr, Endpoints

REGISTER = "chaos_register"
SET = "chaos_set"
#: the tables (created by the setup hook on the primary; replicated like any other data). The
#: set workload spreads its elements over rotating keys and reads one key at a time: the index
#: keeps a read proportional to its key's elements, not to every element of the run.
DDL = (f"CREATE TABLE IF NOT EXISTS {REGISTER} (key text PRIMARY KEY, value bigint NOT NULL)",
       f"CREATE TABLE IF NOT EXISTS {SET} (key text NOT NULL, element bigint NOT NULL)",
       f"CREATE INDEX IF NOT EXISTS {SET}_key ON {SET} (key)")
#: SQLSTATE classes / codes raised before anything commits: the op surely did not happen
_NOT_APPLIED_CLASSES = ("22", "23", "42")
_NOT_APPLIED_CODES = ("25006", "40001", "40P01", "25P02")
#: libpq's connect_timeout per host (its minimum useful value is 2 s)
CONNECT_TIMEOUT = 2


def conninfo(addrs: list[Addr], read_write: bool) -> str:
    """A libpq connection string for `addrs`, tried in order."""
    hosts = ",".join(a.host for a in addrs)
    ports = ",".join(str(a.port) for a in addrs)
    attrs = "read-write" if read_write else "any"
    return (f"host={hosts} port={ports} dbname=postgres user=postgres "
            f"target_session_attrs={attrs} connect_timeout={CONNECT_TIMEOUT} "
            "application_name=chaos-client keepalives=1 keepalives_idle=5 "
            "keepalives_interval=1 keepalives_count=3")


def connect(addr: Addr | list[Addr], timeout: float = 10.0, read_write: bool = False) -> Any:
    """An autocommit psycopg connection to `addr` (or the first read-write of a list)."""
    import psycopg

    addrs = addr if isinstance(addr, list) else [addr]
    return psycopg.connect(conninfo(addrs, read_write), autocommit=True)


def _not_applied(exc: BaseException) -> bool:
    """True when the server rejected the statement before any commit could happen."""
    state = getattr(exc, "sqlstate", None) or ""
    return state in _NOT_APPLIED_CODES or state[:2] in _NOT_APPLIED_CLASSES


def _closed_by_server(conn: Any) -> bool:
    """True when the server already closed this idle connection (a restart, a demotion), so
    nothing sent on it could arrive: reconnect instead of turning the next op into info."""
    if conn.closed or conn.broken:
        return True
    try:
        ready, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    if not ready:
        return False
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.close()


class _Watchdog:
    """Shuts a connection's socket down if a statement outlives `timeout` (no cancel)."""

    def __init__(self, conn: Any, timeout: float):
        self.fired = False
        self._fd = conn.fileno()
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        try:
            sock = socket.socket(fileno=os.dup(self._fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except OSError:
            pass

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class PostgresClient:
    """A chaos.target.Client for the register and set workloads on a Patroni cluster."""

    def __init__(self, endpoints: Endpoints, timeout: float = 2.0, read_from: str = "primary"):
        if not len(endpoints):
            raise ValueError("PostgresClient needs at least one node")
        self.endpoints = endpoints
        self.names = sorted(endpoints)
        self.timeout = timeout
        self.read_from = read_from
        self._rng = random.Random()
        self._conns: dict[str, Any] = {}      # "" = the read-write session, else a node name

    # --- connections ---------------------------------------------------------------------

    def _conn(self, which: str) -> Any:
        conn = self._conns.get(which)
        if conn is not None and _closed_by_server(conn):
            self._drop(which)
            conn = None
        if conn is None:
            if which:
                conn = connect(self.endpoints[which])
            else:
                conn = connect([self.endpoints[n] for n in self.names], read_write=True)
            self._conns[which] = conn
        return conn

    def _drop(self, which: str) -> None:
        conn = self._conns.pop(which, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _node_of(self, conn: Any, which: str) -> str | None:
        if which:
            return which
        try:
            hit = self.endpoints.node_of(conn.info.host, int(conn.info.port))
        except Exception:  # noqa: BLE001 - informational only
            return None
        return hit[0] if hit else None

    # --- the Client protocol -------------------------------------------------------------

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        f = op["f"]
        if f not in ("read", "write", "cas", "add", "read-set"):
            return {"type": "fail", "error": f"unsupported op {f!r}"}
        is_read = f in ("read", "read-set")
        which = ""
        if is_read and op.get("node") in self.endpoints:
            which = str(op["node"])
        elif is_read and self.read_from == "any":
            which = self._rng.choice(self.names)
        try:
            conn = self._conn(which)
        except Exception as exc:  # noqa: BLE001 - no connection: nothing was sent
            return {"type": "fail", "node": which or None,
                    "error": f"connect failed: {type(exc).__name__}: {_lines(exc)}"}
        node = self._node_of(conn, which)
        dog = _Watchdog(conn, self.timeout)
        try:
            with dog:
                value, applied = self._execute(conn, f, op.get("key"), op.get("value"))
        except Exception as exc:  # noqa: BLE001 - classified below
            self._drop(which)
            timed_out = dog.fired
            if is_read or (not timed_out and _not_applied(exc)):
                return {"type": "fail", "node": node,
                        "error": f"{getattr(exc, 'sqlstate', None) or type(exc).__name__}: "
                                 f"{_line(exc)}"}
            why = "no reply in time" if timed_out else f"{type(exc).__name__}: {_line(exc)}"
            return {"type": "info", "node": node, "error": f"indeterminate: {why}"}
        if dog.fired:           # answered just as the watchdog cut the socket: use a new one
            self._drop(which)
        if not applied:
            return {"type": "fail", "node": node, "error": "cas: value did not match"}
        return {"type": "ok", "node": node, "value": value}

    def _execute(self, conn: Any, f: str, key: Any, value: Any) -> tuple[Any, bool]:
        """Run one op; (value for the completion, whether it took effect)."""
        if f == "read":
            row = conn.execute(f"SELECT value FROM {REGISTER} WHERE key = %s", (key,)).fetchone()
            return (row[0] if row else None), True
        if f == "read-set":
            rows = conn.execute(f"SELECT element FROM {SET} WHERE key = %s ORDER BY element",
                                (key,)).fetchall()
            return [r[0] for r in rows], True
        if f == "write":
            conn.execute(f"INSERT INTO {REGISTER} (key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))
            return value, True
        if f == "add":
            conn.execute(f"INSERT INTO {SET} (key, element) VALUES (%s, %s)", (key, value))
            return value, True
        expected, new = value
        if expected is None:
            cur = conn.execute(f"INSERT INTO {REGISTER} (key, value) VALUES (%s, %s) "
                               "ON CONFLICT (key) DO NOTHING", (key, new))
        else:
            cur = conn.execute(f"UPDATE {REGISTER} SET value = %s WHERE key = %s AND value = %s",
                               (new, key, expected))
        return value, cur.rowcount == 1

    def close(self) -> None:
        for which in list(self._conns):
            self._drop(which)


def _line(exc: BaseException) -> str:
    """The first line of an exception's message (libpq's are multi-line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _lines(exc: BaseException, limit: int = 400) -> str:
    """Every line of an exception's message on one line (libpq lists each host it tried)."""
    text = " | ".join(x.strip() for x in str(exc).splitlines() if x.strip())
    return text[:limit] or type(exc).__name__
