"""Accept loops that survive running out of file descriptors: back off, log once, recover.

asyncio's own accept loop (`loop.create_server`, `asyncio.start_server`) handles EMFILE badly
on CPython 3.11: each failed accept in a readiness burst logs a traceback *and* schedules
another retry, so one listener with a full backlog logged ~18k lines a second, and after the
listener closes the queued retries log "Invalid file descriptor: -1". `Listener` replaces it
for the embedded proxy server (API and proxy listeners): one task per listening socket
accepting as the socket becomes readable; when the process is out of descriptors (EMFILE, ENFILE,
ENOBUFS, ENOMEM) pending connections wait in the kernel's backlog while the task retries
with exponential back-off (BACKOFF_MIN doubling to BACKOFF_MAX), and a single warning line is
logged for the whole episode (at most one per LOG_EVERY seconds), plus one line when
accepting works again. Standard library only.

The accept itself is ours too (`_accept`: wait for readability, then `sock.accept()` in the
task), not `loop.sock_accept`: on CPython 3.11 a listener closed (its task cancelled) in the
loop iteration that finds the socket readable runs sock_accept's callback on the cancelled
future, which accepts a connection nobody owns and logs "InvalidStateError: invalid state"
with a traceback (a partition disabling a proxy as a client connects).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("chaos.net.proxy")

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
LOG_EVERY = 60.0
#: accept errors meaning "out of a resource": wait and retry, the backlog keeps the clients
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept errors about one client that already went away: skip it
CLIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET})


class _Episode:
    """Process-wide exhaustion state, so many listeners failing together log one line."""

    def __init__(self) -> None:
        self.since: float | None = None  # monotonic start of the current episode
        self.failures = 0
        self.last_logged = -LOG_EVERY

    def failed(self, where: str, exc: OSError) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = now
            if now - self.last_logged >= LOG_EVERY:
                self.last_logged = now
                log.warning("proxy server: out of file descriptors (%s) accepting on %s; new "
                            "connections wait in the backlog, accept retried with back-off "
                            "(up to %g s); not logged again until it recovers",
                            exc.strerror or exc, where, BACKOFF_MAX)

    def recovered(self) -> None:
        if self.since is None:
            return
        took, failures = time.monotonic() - self.since, self.failures
        logged = self.last_logged >= self.since
        self.since, self.failures = None, 0
        if logged:
            log.warning("proxy server: accepting connections again after %.1f s "
                        "(%d failed accepts)", took, failures)


EPISODE = _Episode()


def _wake(ready: asyncio.Future[None]) -> None:
    """A reader callback: the socket is readable (a no-op once `ready` is done or
    cancelled, which is the whole point)."""
    if not ready.done():
        ready.set_result(None)


def _where(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "a closed socket"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Listener:
    """Accepts on a bound, listening socket and hands each connection to `on_accept`.

    The stand-in for asyncio.Server used by the proxy server: `sockets`, `close()`,
    `wait_closed()`. `on_accept(conn)` receives a non-blocking connected socket and owns it.
    """

    def __init__(self, sock: socket.socket, on_accept: Callable[[socket.socket], None]) -> None:
        sock.setblocking(False)
        self.sockets = (sock,)
        self._sock = sock
        self._on_accept = on_accept
        self._where = _where(sock)
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._accept_loop())
        # The socket is closed once the task is done, i.e. after asyncio dropped its reader
        # for the fd: closing it earlier could let a new socket reuse the fd number and then
        # lose its own reader registration to our late cleanup.
        self._task.add_done_callback(lambda _task: sock.close())

    async def _accept(self) -> socket.socket:
        """The next connection: accept() in this task once the socket is readable, so a
        cancellation can never strand an accepted connection (see the module doc)."""
        loop = asyncio.get_running_loop()
        fd = self._sock.fileno()
        while True:
            try:
                conn, _addr = self._sock.accept()
                return conn
            except (BlockingIOError, InterruptedError):
                pass
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    async def _accept_loop(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                conn = await self._accept()
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    EPISODE.failed(self._where, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                if exc.errno in CLIENT_ERRNOS:
                    continue
                if self._sock.fileno() < 0:  # closed under us
                    return
                log.warning("proxy server: accept on %s failed: %s; retrying in %g s",
                            self._where, exc, BACKOFF_MAX)
                await asyncio.sleep(BACKOFF_MAX)
                continue
            delay = BACKOFF_MIN
            EPISODE.recovered()
            conn.setblocking(False)
            try:
                self._on_accept(conn)
            except Exception:  # noqa: BLE001 - one connection's failure never stops the listener
                log.exception("proxy server: handling a connection on %s failed", self._where)
                conn.close()

    def close(self) -> None:
        """Stop accepting; the listening socket closes as soon as the accept task has ended
        (live connections are the owner's)."""
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():  # we ourselves are being cancelled
                    raise


def serve_protocol(sock: socket.socket, factory: Callable[[], asyncio.Protocol]) -> Listener:
    """Like `loop.create_server(factory, sock=sock)`, with the accept loop of this module."""
    loop = asyncio.get_running_loop()

    def on_accept(conn: socket.socket) -> None:
        def failed(t: asyncio.Task[Any]) -> None:  # the socket is ours until a transport has it
            if not t.cancelled() and t.exception() is not None:
                conn.close()

        task = loop.create_task(loop.connect_accepted_socket(factory, sock=conn))
        task.add_done_callback(failed)

    return Listener(sock, on_accept)


def serve_streams(sock: socket.socket,
                  on_client: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                      Awaitable[None] | None],
                  limit: int = 2 ** 16) -> Listener:
    """Like `asyncio.start_server(on_client, sock=sock)`: streams per connection."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, on_client, loop=loop)

    return serve_protocol(sock, factory)
