"""The embedded Toxiproxy-compatible server: the proxy registry, its API listener, its lifecycle.

`ProxyServer` runs on an asyncio loop (`await start()`, `await close()`); `ServerThread` runs one
in a background thread for callers that are not async (the client layer, tests, benchmarks).
Closing the server closes the API listener, every proxy listener and every connection.
Standard library only.
"""
from __future__ import annotations

import asyncio
import random
import socket
import threading
from typing import Any

from chaos.net.proxy.accept import Listener, serve_streams
from chaos.net.proxy.proxy import Proxy, resolve_listen
from chaos.net.proxy.toxics import ApiError

VERSION = "2.12.0"


def _str_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"bad request body: {key} must be a string")
    return value


def _bool_field(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"bad request body: {key} must be a boolean")
    return value


def _listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on the first address `host` resolves to; OSError if it can't."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return socket.create_server(sockaddr, family=family, backlog=128)


class ProxyServer:
    """Proxies by name plus the HTTP API serving them (see chaos.net.proxy.api)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, seed: int | None = None) -> None:
        self.host = host
        self.port = port
        self.proxies: dict[str, Proxy] = {}
        self.rng = random.Random(seed)
        self.lock = asyncio.Lock()  # API mutations run one at a time, like upstream's mutex
        self._api: Listener | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind the API; with port 0 `self.port` becomes the real one. OSError if it can't."""
        from chaos.net.proxy.api import handle_client

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._clients.add(task)
            try:
                await handle_client(self, reader, writer)
            finally:
                self._clients.discard(task)

        # Our own accept loop (chaos.net.proxy.accept), not asyncio.start_server: it survives
        # running out of file descriptors with back-off and one log line.
        self._api = serve_streams(_listen_socket(self.host, self.port), on_client)
        self.port = self._api.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop the API and every proxy (listeners and connections)."""
        if self._api is not None:
            self._api.close()
        for task in list(self._clients):
            task.cancel()
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()
        if self._api is not None:
            try:
                await asyncio.wait_for(self._api.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
            self._api = None

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    # -- registry operations (called by the API with the lock held) -------------------------

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    @staticmethod
    def parse_proxy(body: Any, where: str = "") -> tuple[str, str, str, bool]:
        """(name, listen, upstream, enabled) from a create body; 400 when a field is missing."""
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: expected a JSON object")
        name = _str_field(body, "name")
        if not name:
            raise ApiError(400, f"missing required field: name{where}")
        upstream = _str_field(body, "upstream")
        if not upstream:
            raise ApiError(400, f"missing required field: upstream{where}")
        listen = _str_field(body, "listen") or ""
        return name, listen, upstream, _bool_field(body, "enabled", True)

    async def create(self, body: Any) -> Proxy:
        name, listen, upstream, enabled = self.parse_proxy(body)
        if name in self.proxies:
            raise ApiError(409, "proxy already exists")
        proxy = Proxy(name, listen, upstream, self.rng)
        if enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def update(self, name: str, body: Any) -> Proxy:
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: expected a JSON object")
        listen = _str_field(body, "listen")
        upstream = _str_field(body, "upstream")
        enabled = _bool_field(body, "enabled", proxy.enabled)
        moved = (listen is not None and resolve_listen(listen) != proxy.listen) or (
            upstream is not None and upstream != proxy.upstream
        )
        if moved or not enabled:
            await proxy.stop()
        if listen is not None and moved:
            proxy.listen = listen
        if upstream is not None:
            proxy.upstream = upstream
        if enabled:
            await proxy.start()
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.get(name)
        del self.proxies[name]
        await proxy.stop()

    async def populate(self, body: Any) -> list[Proxy] | None:
        """Create/replace proxies from a JSON array; raises (error, created-so-far) on failure."""
        if not isinstance(body, list):
            raise ApiError(400, "bad request body: expected a JSON array of proxies")
        entries = [self.parse_proxy(e, f" at proxy {i + 1}") for i, e in enumerate(body)]
        done: list[Proxy] = []
        for name, listen, upstream, enabled in entries:
            try:
                old = self.proxies.get(name)
                if old is not None:
                    port0 = listen.endswith(":0") or listen == ""
                    same = old.listen == resolve_listen(listen) and old.upstream == upstream
                    if not port0 and same:
                        done.append(old)
                        continue
                    del self.proxies[name]
                    await old.stop()
                proxy = Proxy(name, listen, upstream, self.rng)
                if enabled:
                    await proxy.start()
                self.proxies[name] = proxy
                done.append(proxy)
            except ApiError as exc:
                raise PopulateError(exc, done) from None
        return done or None

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (which closes blackholed connections)."""
        for proxy in self.proxies.values():
            await proxy.start()
            proxy.toxics.clear()
            proxy.notify()


class PopulateError(ApiError):
    """A /populate failure part-way: carries the proxies created before it."""

    def __init__(self, cause: ApiError, done: list[Proxy]) -> None:
        super().__init__(cause.status, cause.message)
        self.done = done


async def _cancel_all() -> None:
    """Cancel and reap every task still pending on the loop (connection pumps, API clients)."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ServerThread:
    """A ProxyServer on its own event loop in a daemon thread; `stop()` shuts it down fully.

    >>> srv = ServerThread(port=0).start(); srv.url   # doctest: +SKIP
    'http://127.0.0.1:40123'
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        self.server = ProxyServer(host, port, seed)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.server.close())
            self.loop.run_until_complete(_cancel_all())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> ServerThread:
        """Start and wait until the API listens; re-raises the bind error if it cannot."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Close every listener and connection, stop the loop, join the thread. Idempotent."""
        if self._thread.is_alive() and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
            self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
