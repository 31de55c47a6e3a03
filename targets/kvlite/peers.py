"""Outgoing connections from one node to one peer, at the address this node was given.

A node reaches peer b only at the address it was configured with for b (maybe a proxy of the
fault mesh) and never learns addresses from peers. Links can be cut, reset or blackholed at
any time, so every call has a timeout, and a call that times out or fails closes the
connection: the next call reconnects (a blackholed connection would otherwise swallow every
later request too).
"""
from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any


class PeerError(Exception):
    """The peer did not answer in time, or the connection failed."""


class PeerLink:
    """One pipelined request/reply connection to a peer, reconnecting on demand."""

    def __init__(self, name: str, host: str, port: int):
        self.name = name
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._connecting: asyncio.Lock | None = None

    async def _connect(self, timeout: float) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, limit=1 << 26), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise PeerError(f"connect to {self.name} failed: {exc!r}") from None
            self._reader, self._writer = reader, writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer))
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                    fut = self._waiting.pop(msg.get("id"), None)
                except (ValueError, AttributeError):
                    continue
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if self._writer is writer:
                self._drop(f"connection to {self.name} closed")

    def _drop(self, reason: str) -> None:
        """Close the connection and fail every call waiting on it."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(PeerError(reason))

    async def call(self, msg: dict[str, Any], timeout: float,
                   raw: bytes | None = None) -> dict[str, Any]:
        """Send a request and await its reply; PeerError on timeout or connection loss.

        `raw`, when given, is the already-encoded request line without its id: it must start
        with "{" and the id is spliced in (used for big append batches).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        writer = await self._connect(timeout)
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[rid] = fut
        if raw is not None:
            data = b'{"id":%d,%s' % (rid, raw[1:])
        else:
            msg = dict(msg, id=rid)
            data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        # a timer instead of asyncio.wait_for: this is the replication hot path
        timer = loop.call_later(max(0.001, deadline - loop.time()), self._expire, rid, writer,
                                timeout)
        try:
            writer.write(data)
            return await fut
        except (OSError, RuntimeError) as exc:
            self._waiting.pop(rid, None)
            if self._writer is writer:
                self._drop(str(exc))
            raise PeerError(f"send to {self.name} failed: {exc!r}") from None
        finally:
            timer.cancel()
            self._waiting.pop(rid, None)

    def _expire(self, rid: int, writer: asyncio.StreamWriter, timeout: float) -> None:
        """A call timed out: fail it, and drop the connection (it may be blackholed)."""
        fut = self._waiting.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_exception(PeerError(f"{self.name} did not answer within {timeout:.3f}s"))
        if self._writer is writer:
            self._drop(f"{self.name} timed out")

    def close(self) -> None:
        self._drop("link closed")
        if self._reader_task is not None:
            self._reader_task.cancel()
