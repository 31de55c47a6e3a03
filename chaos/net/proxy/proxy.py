"""One proxy: a listener, its live connections, and its ordered toxic chain per stream.

Enabling binds the listen address (port 0 picks a free port and `listen` then reports the real
one, as Toxiproxy does); disabling closes the listener (new connects are refused) and every
live connection (both sockets). Toxics survive disable/enable. Standard library only.
"""
from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
from typing import Any

from chaos.net.proxy.accept import Listener, serve_protocol
from chaos.net.proxy.link import Connection, Side
from chaos.net.proxy.toxics import ApiError, Toxic

#: how long the proxy waits for its upstream to accept before dropping the client (upstream
#: Toxiproxy has no limit; a hanging dial there blocks the proxy, here it only costs a task)
DIAL_TIMEOUT = 10.0


def split_hostport(addr: str) -> tuple[str, int]:
    """"h:p" / "[v6]:p" / ":p" / "" -> (host, port); ValueError when the port is not a number."""
    if not addr:
        return "", 0
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError(f"missing port in address {addr}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    num = int(port)
    if not 0 <= num <= 65535:
        raise ValueError(f"invalid port {port!r}")
    return host, num


def resolve_listen(addr: str) -> str:
    """The bound address a listen string would give (for /populate's "same proxy?" check)."""
    try:
        host, port = split_hostport(addr)
    except ValueError:
        return addr
    if host in ("", "::"):
        return f"[::]:{port}"
    if host == "localhost":
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(addr: str) -> socket.socket:
    """A listening socket for `addr`; errors read like Go's (`listen tcp A: bind: ...`)."""
    try:
        host, port = split_hostport(addr)
    except ValueError as exc:
        raise ApiError(500, f"listen tcp {addr}: address {exc}") from None
    try:
        if host in ("", "::"):
            if socket.has_dualstack_ipv6():
                return socket.create_server(
                    ("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128
                )
            host = "0.0.0.0"
        if host == "localhost":  # as Go does: never ::1 first
            host = "127.0.0.1"
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        return socket.create_server(sockaddr, family=family, backlog=128)
    except socket.gaierror as exc:
        raise ApiError(500, f"listen tcp {addr}: lookup {host}: {exc.strerror}") from None
    except OSError as exc:
        text = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRINUSE:
            text = "address already in use"
        raise ApiError(500, f"listen tcp {addr}: bind: {text.lower()}") from None


def _format(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f"[::]:{port}" if host == "::" else f"[{host}]:{port}"
    return f"{host}:{port}"


def _abort(side: Side | None) -> None:
    if side is not None and side.transport is not None:
        side.transport.abort()


class _ClientSide(Side):
    """The accepted socket: starts the upstream dial as soon as it is made."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.proxy.traffic["accepted"][0] += 1
        task = asyncio.ensure_future(self.proxy._dial(self))
        self.proxy._pending.add(task)
        task.add_done_callback(self.proxy._pending.discard)


class Proxy:
    """A named proxy `listen` -> `upstream` with toxics; methods run on the server's loop."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.rng = rng
        self.toxics: list[Toxic] = []
        #: the toxics of each stream, in order (recomputed by notify(); read per chunk)
        self.chains: dict[str, list[Toxic]] = {"upstream": [], "downstream": []}
        self.connections: set[Connection] = set()
        #: traffic counters (our extension, see to_json): bytes received per direction
        #: ("upstream" = from the client, "downstream" = from the upstream) and connections
        #: accepted, since the proxy was created; they survive disable/enable and toxics
        self.traffic: dict[str, list[int]] = {"upstream": [0], "downstream": [0], "accepted": [0]}
        self._server: Listener | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self._server is not None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and accept; raises ApiError(500) when the address cannot be bound."""
        if self._server is not None:
            return
        sock = _bind(self.listen)
        self.listen = _format(sock)
        self._server = serve_protocol(sock, lambda: _ClientSide(self))  # survives EMFILE

    async def stop(self) -> None:
        """Close the listener and every live connection (dials in progress are cancelled)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._pending):
            task.cancel()
        for conn in list(self.connections):
            conn.close()
        if server is not None:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    async def _dial(self, client: Side) -> None:
        """Connect the accepted client to the upstream; on failure the client sees EOF."""
        up: Side | None = None
        try:
            host, port = split_hostport(self.upstream)
            loop = asyncio.get_running_loop()
            _, up = await asyncio.wait_for(loop.create_connection(Side, host, port), DIAL_TIMEOUT)
        except (TimeoutError, OSError, ValueError):
            # The client saw its connect succeed; now it sees EOF (Toxiproxy issue #265).
            _abort(client)
            return
        except asyncio.CancelledError:
            _abort(client)
            raise
        if self._server is None or client.lost or up is None:  # disabled or gone meanwhile
            _abort(client)
            _abort(up)
            return
        conn = Connection(self, client, up)
        self.connections.add(conn)
        conn.start()

    # -- toxics -----------------------------------------------------------------------------

    def chain(self, direction: str) -> list[Toxic]:
        return [t for t in self.toxics if t.direction == direction]

    def listed(self) -> list[Toxic]:
        """The toxics in the order the API lists them: the upstream chain, then downstream."""
        return self.chain("upstream") + self.chain("downstream")

    def find(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise ApiError(404, "toxic not found")

    def add_toxic(self, toxic: Toxic) -> None:
        if any(t.name == toxic.name for t in self.toxics):
            raise ApiError(409, "toxic already exists")
        self.toxics.append(toxic)
        self.notify()

    def remove_toxic(self, name: str) -> None:
        self.toxics.remove(self.find(name))
        self.notify()

    def notify(self) -> None:
        """Make every live connection pick up the current chains now."""
        self.chains = {d: self.chain(d) for d in ("upstream", "downstream")}
        for conn in list(self.connections):
            conn.toxics_changed()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},
            "toxics": [t.to_json() for t in self.listed()],
            # Our extension (the real Toxiproxy has no such field; clients must treat its
            # absence as "unmeasured"): what the fault-effect evidence of chaos.net reads.
            "chaos_traffic": {
                "accepted": self.traffic["accepted"][0],
                "upstream_bytes": self.traffic["upstream"][0],
                "downstream_bytes": self.traffic["downstream"][0],
                "live": len(self.connections),
            },
        }
