"""Talking to one etcd member through its v3 HTTP/JSON gateway, with the standard library only.

Why no client library: the maintained Python etcd clients speak gRPC (python-etcd3 is
gRPC-based and unmaintained since 2020; it also pins old protobuf/grpcio), while etcd 3.4
serves the same v3 API as JSON over HTTP on its client port (the grpc-gateway under /v3/).
http.client keeps the controller free of a gRPC stack and lets every outcome be classified
exactly: a request never sent (connect refused), one sent and unanswered (timeout, lost
connection) and one answered with an error code are three different things to a checker.

The gateway's JSON: keys and values are base64 strings; 64-bit integers (revisions, member
ids, terms) are decimal strings; fields at their zero value (false, 0, empty) are omitted.
"""
from __future__ import annotations

import base64
import http.client
import json
import select
import socket
from typing import Any

from chaos.target import Addr


def b64(text: str) -> str:
    """A key or value as the gateway wants it."""
    return base64.b64encode(text.encode()).decode()


def unb64(text: str | None) -> str:
    """A key or value as the gateway sent it ('' for an omitted field)."""
    return base64.b64decode(text or "").decode()


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with `prefix` (etcd's prefix rule: the
    prefix with its last byte incremented); prefixes here are ASCII."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class NotSent(ConnectionError):
    """The request never reached the member (connect failed): it surely did not happen."""


class NoAnswer(OSError):
    """The request was sent (or may have been) and no answer came: its outcome is unknown."""


class EtcdError(Exception):
    """The member answered with an error: `code` is the gRPC status code, `message` etcd's
    text (e.g. "etcdserver: request timed out")."""

    def __init__(self, code: int, message: str, status: int):
        super().__init__(f"{message} (code {code}, http {status})")
        self.code = code
        self.message = message
        self.status = status


#: etcd errors raised before a request is proposed to Raft: the request surely did not
#: happen (gRPC code, or the message etcd puts in it). Anything else from a write is unknown.
REFUSED_MESSAGES = ("etcdserver: raft proposal dropped", "etcdserver: too many requests",
                    "etcdserver: no leader", "etcdserver: not capable",
                    "etcdserver: key is not provided", "etcdserver: request is too large",
                    "etcdserver: too many operations in txn request",
                    "etcdserver: duplicate key given in txn request")
#: gRPC codes that mean the request was rejected without being processed
#: (3 INVALID_ARGUMENT, 7 PERMISSION_DENIED, 12 UNIMPLEMENTED, 16 UNAUTHENTICATED)
REFUSED_CODES = frozenset({3, 7, 12, 16})


def refused(err: EtcdError) -> bool:
    """True when the error says the request was refused before being proposed."""
    return err.code in REFUSED_CODES or any(err.message.startswith(m) for m in REFUSED_MESSAGES)


class Gateway:
    """One keep-alive HTTP connection to one member's gateway; one request at a time.

    `call(path, body)` returns the decoded JSON answer, or raises NotSent (never reached the
    member), NoAnswer (sent, outcome unknown) or EtcdError (the member said no). After
    NoAnswer the connection is dropped, so a late answer can never be taken for the next one.
    """

    def __init__(self, addr: Addr, timeout: float):
        self.addr = addr
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _fresh(self) -> http.client.HTTPConnection:
        """A connected HTTPConnection: the kept one if the member has not closed it."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:  # readable while idle = closed (EOF) or reset by the member: do not reuse
                r, _, _ = select.select([conn.sock], [], [], 0)
            except (OSError, ValueError):
                r = [conn.sock]
            if not r:
                return conn
        self.close()
        conn = http.client.HTTPConnection(self.addr.host, self.addr.port, timeout=self.timeout)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            conn.close()
            raise NotSent(f"{self.addr}: connect failed: {exc}") from exc
        self._conn = conn
        return conn

    def call(self, path: str, body: dict[str, Any] | None = None,
             timeout: float | None = None, method: str = "POST") -> dict[str, Any]:
        """`method` path with `body` as JSON (POST: the v3 gateway; GET: etcd's plain HTTP
        endpoints such as /debug/vars, no body)."""
        conn = self._fresh()
        if conn.sock is not None:
            conn.sock.settimeout(timeout or self.timeout)
        payload = json.dumps(body or {}).encode() if method == "POST" else None
        try:
            conn.request(method, path, payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise NoAnswer(f"{self.addr}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"message": raw[:200].decode(errors="replace")}
        if resp.status != 200 or (isinstance(answer, dict) and "code" in answer
                                  and "error" in answer):
            if resp.will_close:
                self.close()
            raise EtcdError(int(answer.get("code", -1)), str(answer.get("message") or
                            answer.get("error") or f"http {resp.status}"), resp.status)
        if resp.will_close:
            self.close()
        return answer

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None


def call_once(addr: Addr, path: str, body: dict[str, Any] | None, timeout: float,
              method: str = "POST") -> dict[str, Any]:
    """One request on a fresh connection (status and admin calls)."""
    gw = Gateway(addr, timeout)
    try:
        return gw.call(path, body, method=method)
    finally:
        gw.close()
