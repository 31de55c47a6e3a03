"""One proxied TCP connection: two links (upstream, downstream) pumping bytes through toxics.

Model (Toxiproxy's, see shared/reference/toxiproxy-api.md §4):

- Each socket is an asyncio Protocol (`Side`); bytes it receives go to the link reading it.
  With no toxic on that stream and nothing queued, a chunk is written to the other socket at
  once (the fast path: no task switch, no copy). Otherwise it is queued with its receive time
  and the link's pump task pushes it through the toxics, so latency *shifts* a stream instead
  of throttling it. The queue is bounded (1024 chunks) and a full destination buffer pauses
  the source: a stalled toxic (bandwidth) back-pressures the sender through TCP.
- The pump reads the proxy's current toxic chain for every chunk, so toxics added, updated or
  removed apply to live connections at once; a chunk held by latency is re-timed when the
  chain changes (removing the latency toxic releases it immediately, no data lost).
- Toxicity is rolled once per (link, toxic generation): a toxic with toxicity 0.5 affects about
  half the connections, not half the chunks; an update re-rolls.
- No half-close: when either source ends, the whole connection closes (upstream behaviour).

Deliberate deviations: reset_peer always ends in a TCP RST (SO_LINGER 0 is set when it fires)
and never turns other closes into RSTs (upstream's toxicity-0 RST surprise, its issue #603);
the slicer cuts pieces of average_size ± size_variation directly instead of recursing.
"""
from __future__ import annotations

import asyncio
import collections
import random
import socket
import struct
import time
from typing import TYPE_CHECKING

from chaos.net.proxy.toxics import Toxic

if TYPE_CHECKING:  # pragma: no cover
    from chaos.net.proxy.proxy import Proxy

QUEUE_CHUNKS = 1024


class Side(asyncio.Protocol):
    """One socket of a connection (the client's or the upstream's)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reads_into: Link | None = None  # the link whose source this socket is
        self.writes_for: Link | None = None  # the link whose destination this socket is
        self.early: list[bytes | None] = []  # bytes that arrived before the links existed
        self._pauses: set[str] = set()
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pause("dial")  # until both sockets exist (Connection.start)

    def data_received(self, data: bytes) -> None:
        if self.reads_into is None:
            self.early.append(data)
        else:
            self.reads_into.feed(data)

    def eof_received(self) -> bool:
        if self.reads_into is None:
            self.early.append(None)
        else:
            self.reads_into.feed(None)
        return True  # keep the transport: the link decides when the connection closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.writable.set()
        link = self.reads_into or self.writes_for
        if link is not None:
            link.conn.close()

    def pause_writing(self) -> None:
        self.writable.clear()
        if self.writes_for is not None:
            self.writes_for.source.pause("dest")

    def resume_writing(self) -> None:
        self.writable.set()
        if self.writes_for is not None:
            self.writes_for.source.resume("dest")

    def pause(self, why: str) -> None:
        if not self._pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._pauses.add(why)

    def resume(self, why: str) -> None:
        if why in self._pauses:
            self._pauses.discard(why)
            if not self._pauses and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("destination closed")
        self.transport.write(data)

    async def drain(self) -> None:
        await self.writable.wait()
        if self.lost:
            raise ConnectionError("destination closed")


class Connection:
    """A client socket and its upstream socket; closing it closes both and stops the pumps."""

    def __init__(self, proxy: Proxy, client: Side, upstream: Side) -> None:
        self.proxy = proxy
        self.sides = (client, upstream)
        self.closed = False
        self.links = {
            "upstream": Link(self, "upstream", client, upstream),
            "downstream": Link(self, "downstream", upstream, client),
        }

    def start(self) -> None:
        """Wire the sides to their links, replay early bytes, start reading both sockets."""
        for link in self.links.values():
            link.sync()
            link.source.reads_into = link
            link.dest.writes_for = link
        for side in self.sides:
            early, side.early = side.early, []
            for data in early:
                side.reads_into.feed(data)  # type: ignore[union-attr]
            side.resume("dial")
        if any(side.lost for side in self.sides):
            self.close()

    def close(self, reset: bool = False) -> None:
        """Close both sockets; with `reset`, abort with SO_LINGER 0 so the peers see a TCP RST."""
        if self.closed:
            return
        self.closed = True
        self.proxy.connections.discard(self)
        for link in self.links.values():
            link.stop()
        for side in self.sides:
            transport = side.transport
            if transport is None:
                continue
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                transport.abort()
            else:
                transport.close()

    def toxics_changed(self) -> None:
        """Called by the proxy after any toxic change: links re-sync timers and wake up."""
        for link in self.links.values():
            link.sync()
            link.changed.set()
            link.wake.set()


class Link:
    """One direction of a connection and its per-toxic state (rolls, counters, timers)."""

    def __init__(self, conn: Connection, direction: str, source: Side, dest: Side) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.wake = asyncio.Event()  # something was queued
        self.changed = asyncio.Event()  # the toxic chain changed
        self.busy = False  # the pump holds a chunk
        self.rng = conn.proxy.rng
        #: toxic name -> (generation, active, type) for every toxic this link has seen
        self.rolls: dict[str, tuple[int, bool, str]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.sent: dict[str, int] = {}  # limit_data counters (survive updates)
        self.bw_next = 0.0  # bandwidth pacing clock (monotonic seconds)
        #: the proxy's byte counter for this direction (Proxy.traffic): a one-slot list, so
        #: the fast path pays one index and one add per chunk
        self.counter = conn.proxy.traffic[direction]
        self.task = asyncio.ensure_future(self._pump())

    def stop(self) -> None:
        self.cancel_timers()
        self.task.cancel()

    # -- input ------------------------------------------------------------------------------

    def feed(self, data: bytes | None) -> None:
        """A chunk (None = EOF) from the source socket."""
        if self.conn.closed:
            return
        if data is not None:
            self.counter[0] += len(data)  # bytes the source sent, delivered or not
        if data is not None and not self.queue and not self.busy and not self.chain():
            self.dest.transport.write(data)  # type: ignore[union-attr]  # fast path
            return
        self.queue.append((time.monotonic(), data))
        self.wake.set()
        if len(self.queue) >= QUEUE_CHUNKS:
            self.source.pause("queue")

    # -- toxic state ------------------------------------------------------------------------

    def chain(self) -> list[Toxic]:
        return self.conn.proxy.chains[self.direction]

    def sync(self) -> None:
        """Roll toxicity for new/updated toxics, arm timeout timers, react to removals."""
        if self.conn.closed:
            return
        current = {t.name: t for t in self.chain()}
        for name, (_gen, _active, type_) in list(self.rolls.items()):
            if name not in current:
                del self.rolls[name]
                self._cancel_timer(name)
                if type_ == "timeout":
                    # Upstream closes every link that carried a timeout toxic when it is
                    # removed (the stream may have lost data: resuming it would corrupt it).
                    self.conn.close()
                    return
        for name, toxic in current.items():
            seen = self.rolls.get(name)
            if seen is not None and seen[0] == toxic.generation:
                continue
            active = self.rng.random() < toxic.toxicity
            self.rolls[name] = (toxic.generation, active, toxic.type)
            self._cancel_timer(name)
            if active and toxic.type == "timeout" and toxic.attributes["timeout"] > 0:
                loop = asyncio.get_running_loop()
                self.timers[name] = loop.call_later(
                    toxic.attributes["timeout"] / 1000, self.conn.close
                )

    def _cancel_timer(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def cancel_timers(self) -> None:
        for name in list(self.timers):
            self._cancel_timer(name)

    def active(self) -> list[Toxic]:
        """The toxics that really act on this link (after the toxicity roll)."""
        self.sync()
        out = []
        for toxic in self.chain():
            roll = self.rolls.get(toxic.name)
            if roll is not None and roll[1]:
                out.append(toxic)
        return out

    # -- the pump ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.queue:
                    self.busy = True
                    stamp, data = self.queue.popleft()
                    if len(self.queue) < QUEUE_CHUNKS // 2:
                        self.source.resume("queue")
                    if data is None:
                        await self._on_eof()
                        return
                    if not await self._forward(stamp, data):
                        self.conn.close()
                        return
                    self.busy = False
        except (OSError, RuntimeError):
            self.conn.close()  # destination gone

    async def _write(self, data: bytes) -> None:
        self.dest.write(data)
        await self.dest.drain()

    async def _on_eof(self) -> None:
        """Source ended: hold the close for slow_close / reset_peer, then close everything."""
        for toxic in self.active():
            if toxic.type == "slow_close":
                await asyncio.sleep(toxic.attributes["delay"] / 1000)
            elif toxic.type == "reset_peer":
                await asyncio.sleep(toxic.attributes["timeout"] / 1000)
                self.conn.close(reset=True)
                return
        self.conn.close()

    async def _hold(self, stamp: float) -> None:
        """Wait until `stamp` + the latency of the chain, re-timing whenever the chain changes."""
        draws: dict[tuple[str, int], float] = {}
        while True:
            delay = 0.0
            for toxic in self.active():
                if toxic.type != "latency":
                    continue
                key = (toxic.name, toxic.generation)
                if key not in draws:
                    base, jitter = toxic.attributes["latency"], toxic.attributes["jitter"]
                    ms = base + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
                    draws[key] = max(ms, 0.0) / 1000
                delay += draws[key]
            wait = stamp + delay - time.monotonic()
            if wait <= 0:
                return
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), wait)
            except TimeoutError:
                return

    async def _forward(self, stamp: float, data: bytes) -> bool:
        """Push one chunk through the active toxics; False when the link must end."""
        toxics = self.active()
        if not toxics:
            await self._write(data)
            return True
        for toxic in toxics:
            if toxic.type == "timeout":
                return True  # discarded: a blackhole (timers close it if timeout > 0)
            if toxic.type == "reset_peer":
                await asyncio.sleep(toxic.attributes["timeout"] / 1000)
                self.conn.close(reset=True)
                return False
        if any(t.type == "latency" for t in toxics):
            await self._hold(stamp)
            toxics = self.active()
            if any(t.type == "timeout" for t in toxics):
                return True
        close_after = False
        for toxic in toxics:
            if toxic.type == "limit_data":
                used = self.sent.get(toxic.name, 0)
                room = toxic.attributes["bytes"] - used
                if room <= 0:
                    return False
                if len(data) >= room:
                    data, close_after = data[:room], True
                self.sent[toxic.name] = used + len(data)
        pieces, gap = [data], 0.0
        for toxic in toxics:
            if toxic.type == "slicer":
                pieces = _slice(pieces, toxic.attributes, self.rng)
                gap += toxic.attributes["delay"] / 1e6
        rate = min((t.attributes["rate"] for t in toxics
                    if t.type == "bandwidth" and t.attributes["rate"] > 0), default=0)
        for i, piece in enumerate(pieces):
            if i and gap:
                await asyncio.sleep(gap)
            await self._write_paced(piece, rate)
        if close_after:
            await self.dest.drain()
        return not close_after

    async def _write_paced(self, data: bytes, rate_kb: int) -> None:
        """Write `data`, at most `rate_kb` KB/s (1 KB = 1000 bytes; 0 = unlimited)."""
        if rate_kb <= 0:
            await self._write(data)
            return
        bps = rate_kb * 1000
        step = max(bps // 10, 1)  # 100 ms worth of bytes per write, as upstream splits
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            now = time.monotonic()
            self.bw_next = max(self.bw_next, now) + len(piece) / bps
            await self._write(piece)
            wait = self.bw_next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)


def _slice(pieces: list[bytes], attrs: dict[str, int], rng: random.Random) -> list[bytes]:
    """Cut chunks into pieces of about average_size ± size_variation bytes (validated > 0)."""
    avg, var = attrs["average_size"], attrs["size_variation"]
    out: list[bytes] = []
    for data in pieces:
        i = 0
        while i < len(data):
            size = max(avg + (rng.randint(-var, var) if var else 0), 1)
            out.append(data[i : i + size])
            i += size
    return out
