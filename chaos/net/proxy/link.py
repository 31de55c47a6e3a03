"""One proxied TCP connection: two links (upstream, downstream) pumping bytes through toxics.

Model (Toxiproxy's, see shared/reference/toxiproxy-api.md §4):

- A link has a reader task (source socket -> queue of (receive time, chunk)) and a pump task
  (queue -> toxics -> destination). The reader never waits on toxics, so latency *shifts* a
  stream instead of throttling it; the queue is bounded (1024 chunks), so a stalled toxic
  (bandwidth) back-pressures the sender through TCP, as upstream does.
- The pump reads the proxy's current toxic chain for every chunk, so toxics added, updated or
  removed apply to live connections at once; a chunk held by latency is re-timed when the
  chain changes (removing the latency toxic releases it immediately, no data lost).
- Toxicity is rolled once per (link, toxic generation): a toxic with toxicity 0.5 affects about
  half the connections, not half the chunks; an update re-rolls.
- No half-close: when either source ends, the whole connection closes (upstream behaviour).
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from typing import TYPE_CHECKING

from chaos.net.proxy.toxics import Toxic

if TYPE_CHECKING:  # pragma: no cover
    from chaos.net.proxy.proxy import Proxy

CHUNK = 64 * 1024
QUEUE_CHUNKS = 1024


class Connection:
    """A client socket and its upstream socket; closing it closes both and stops all tasks."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.writers = (client[1], upstream[1])
        self.closed = asyncio.Event()
        self.links = {
            "upstream": Link(self, "upstream", client[0], upstream[1]),
            "downstream": Link(self, "downstream", upstream[0], client[1]),
        }

    async def run(self) -> None:
        """Pump both directions until the connection is closed (by a peer, a toxic or the API)."""
        tasks = [t for link in self.links.values() for t in link.start()]
        try:
            await self.closed.wait()
        finally:
            self.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def close(self, reset: bool = False) -> None:
        """Close both sockets; with `reset`, abort with SO_LINGER 0 so the peers see a TCP RST."""
        if self.closed.is_set():
            return
        self.closed.set()
        for link in self.links.values():
            link.cancel_timers()
        for writer in self.writers:
            transport = writer.transport
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
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


class Link:
    """One direction of a connection and its per-toxic state (rolls, counters, timers)."""

    def __init__(
        self,
        conn: Connection,
        direction: str,
        source: asyncio.StreamReader,
        dest: asyncio.StreamWriter,
    ) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(QUEUE_CHUNKS)
        self.changed = asyncio.Event()
        self.rng = conn.proxy.rng
        #: toxic name -> (generation, active, type) for every toxic this link has seen
        self.rolls: dict[str, tuple[int, bool, str]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.sent: dict[str, int] = {}  # limit_data counters (survive updates)
        self.bw_next = 0.0  # bandwidth pacing clock (monotonic seconds)

    def start(self) -> list[asyncio.Task[None]]:
        self.sync()
        return [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._pump())]

    # -- toxic state ------------------------------------------------------------------------

    def chain(self) -> list[Toxic]:
        return self.conn.proxy.chain(self.direction)

    def sync(self) -> None:
        """Roll toxicity for new/updated toxics, arm timeout timers, react to removals."""
        if self.conn.closed.is_set():
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

    # -- tasks ------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                data = await self.source.read(CHUNK)
                await self.queue.put((time.monotonic(), data or None))
                if not data:
                    return
        except (OSError, asyncio.IncompleteReadError):
            await self.queue.put((time.monotonic(), None))

    async def _pump(self) -> None:
        try:
            while True:
                stamp, data = await self.queue.get()
                if data is None:
                    await self._on_eof()
                    return
                if not await self._forward(stamp, data):
                    return
        except (OSError, RuntimeError):
            pass  # destination gone (RuntimeError: write on a closed transport)
        finally:
            self.conn.close()

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
            except asyncio.TimeoutError:
                return

    async def _forward(self, stamp: float, data: bytes) -> bool:
        """Push one chunk through the active toxics; False when the link must end."""
        toxics = self.active()
        if not toxics:
            self.dest.write(data)
            await self.dest.drain()
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
        rate = min(
            (t.attributes["rate"] for t in toxics if t.type == "bandwidth" and t.attributes["rate"] > 0),
            default=0,
        )
        for i, piece in enumerate(pieces):
            if i and gap:
                await asyncio.sleep(gap)
            await self._write_paced(piece, rate)
        return not close_after

    async def _write_paced(self, data: bytes, rate_kb: int) -> None:
        """Write `data`, at most `rate_kb` KB/s (1 KB = 1000 bytes; 0 = unlimited)."""
        if rate_kb <= 0:
            self.dest.write(data)
            await self.dest.drain()
            return
        bps = rate_kb * 1000
        step = max(bps // 10, 1)  # 100 ms worth of bytes per write, as upstream splits
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            now = time.monotonic()
            self.bw_next = max(self.bw_next, now) + len(piece) / bps
            self.dest.write(piece)
            await self.dest.drain()
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
            size = avg + (rng.randint(-var, var) if var else 0)
            out.append(data[i : i + max(size, 1)])
            i += max(size, 1)
    return out
