"""The single funnel into history.jsonl: ops from many sources, written exactly in time order.

Ops are stamped where they happen (a worker process, the nemesis thread, the monitor thread)
with `time.monotonic_ns() - t0_ns`; CLOCK_MONOTONIC is one clock for every process of the host.
The file must still be in non-decreasing `time` order (the reader rejects anything else), and
sources deliver late: a worker sends its ops in batches. So the recorder keeps a heap and, per
source, a *watermark*: a promise that the source will never again deliver an op stamped
earlier than it. Ops up to the smallest watermark of all live sources are safe to write.

- Local sources (`recorder.local(name)`, threads of the controller process) stamp under the
  recorder's lock, so their watermark is always "now" and they never hold anything back.
- Remote sources (worker processes) use `RemoteSink` on their side of a one-way
  `multiprocessing` pipe: it stamps and buffers ops under one lock and sends
  `{"ops", "wm"}` batches every ~20 ms (an empty batch is the idle heartbeat). A remote source
  starts with the watermark "the time it was added", which is before its process exists.
- A remote source that ends (a `bye` message, pipe EOF because its process died, or a dead
  process) stops holding the others back. A source that died without `bye` is listed in
  `stats().lost_sources`: ops it had buffered but not sent are gone (the controller should
  say so; a SIGKILLed worker is not a normal way to end).

`flush()`/`close()` write everything pending; they are meant for the normal end and for the
Ctrl-C / SIGTERM / exception path alike. This module imports nothing heavy (no pandas): worker
processes import it too.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Callable

import orjson

if TYPE_CHECKING:
    from chaos.history.writer import HistoryWriter

Op = dict[str, Any]

#: How often a RemoteSink sends a batch (also its heartbeat when idle).
BATCH_INTERVAL = 0.02
#: Unsent ops a RemoteSink may hold before its producers wait (backpressure).
MAX_BACKLOG = 4096
_DUMP_OPTS = orjson.OPT_NON_STR_KEYS


def _dumps(obj: Any) -> bytes:
    # default=repr: a client returning an odd value (a set, bytes) must not crash a worker.
    return orjson.dumps(obj, default=repr, option=_DUMP_OPTS)


def _stamped(op: Op, t: int) -> Op:
    """A copy of `op` with `time` = t as its first key (any `time` it had is replaced).

    One copy per op: `time` goes in first so it keeps the first position, the op's own keys
    follow in their order, and the stamp then overwrites a `time` the op may have carried.
    """
    out = {"time": t, **op}
    out["time"] = t
    return out


@dataclass
class RecorderStats:
    """A snapshot of the counters, cheap enough to take for every progress-line refresh.

    by_f:        f -> {"ok": n, "fail": n, "info": n} over the completions of every source
    ok/fail/info: completions of client ops (integer process ids) only
    written:     lines written to the history so far; pending: held back in the heap
    last_error:  the latest client completion `error` or worker-reported error
    lost_sources: remote sources that ended without saying goodbye (e.g. SIGKILLed workers)
    late:        ops that arrived behind what was already written (a bug; clamped, kept)
    """

    written: int = 0
    pending: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    by_f: dict[str, dict[str, int]] = field(default_factory=dict)
    last_error: str | None = None
    live_sources: int = 0
    lost_sources: list[str] = field(default_factory=list)
    late: int = 0


@dataclass
class _Remote:
    name: str
    conn: Connection
    watermark: int
    alive: Callable[[], bool] | None
    hello: bool = False
    fatal: str | None = None


class LocalSource:
    """A source in the recorder's own process (nemesis, monitor, final reads). Thread-safe."""

    def __init__(self, recorder: "Recorder", name: str):
        self.recorder = recorder
        self.name = name

    def record(self, op: Op) -> Op:
        """Stamp `op` with the current time and hand it to the recorder; returns the stamped op.

        Invoke and completion are separate calls (record the invoke, do the thing, record the
        completion), so each line carries the time it really happened.
        """
        return self.recorder._record_local(op)


class Recorder:
    """Merges every source's ops into one time-ordered history (see the module docstring)."""

    def __init__(self, writer: "HistoryWriter", t0_ns: int):
        self.writer = writer
        self.t0_ns = t0_ns
        self._lock = threading.Lock()
        self._heap: list[tuple[int, int, Op]] = []
        self._seq = itertools.count()
        self._remotes: dict[str, _Remote] = {}
        self._last_time = 0
        self._stats = RecorderStats()
        self._max_process = -1
        self._keys: dict[Any, None] = {}  # keys of client ops, first-seen order
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # -- clock -------------------------------------------------------------------------------
    def now(self) -> int:
        """Nanoseconds since t0 on CLOCK_MONOTONIC (the clock every source stamps with)."""
        return time.monotonic_ns() - self.t0_ns

    # -- sources -----------------------------------------------------------------------------
    def local(self, name: str) -> LocalSource:
        """A source for a thread of this process; its ops are stamped when recorded."""
        return LocalSource(self, name)

    def add_remote(self, name: str, conn: Connection,
                   alive: Callable[[], bool] | None = None) -> None:
        """Register the reading end of a RemoteSink's pipe. Call BEFORE starting its process.

        `alive` lets the recorder drop a source whose process is gone even if the pipe's EOF
        never shows (a grandchild holding the write end). It must answer True until the
        process has been started: `lambda: proc.exitcode is None`, not `proc.is_alive`.
        """
        with self._lock:
            if name in self._remotes:
                raise ValueError(f"recorder source {name!r} already registered")
            self._remotes[name] = _Remote(name, conn, self.now(), alive)
            self._stats.live_sources = len(self._remotes)
            if self._reader is None:
                self._stop.clear()
                self._reader = threading.Thread(target=self._read_loop, name="chaos-recorder",
                                                daemon=True)
                self._reader.start()

    def source_state(self, name: str) -> tuple[bool, bool, str | None]:
        """(live, said_hello, fatal error) of a remote source; (False, True, None) once ended."""
        with self._lock:
            r = self._remotes.get(name)
            if r is None:
                return False, True, None
            return True, r.hello, r.fatal

    def wait_remotes(self, names: list[str] | None = None, timeout: float = 5.0) -> bool:
        """Wait until the named remote sources (default all) have ended; True if they did."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                left = [n for n in (names if names is not None else list(self._remotes))
                        if n in self._remotes]
            if not left:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- recording ---------------------------------------------------------------------------
    def _record_local(self, op: Op) -> Op:
        with self._lock:
            op = _stamped(op, self.now())
            self._push(op)
            self._drain()
        return op

    def _push(self, op: Op) -> None:
        heapq.heappush(self._heap, (op["time"], next(self._seq), op))
        proc = op.get("process")
        if isinstance(proc, int) and not isinstance(proc, bool):
            if proc > self._max_process:
                self._max_process = proc
            key = op.get("key")
            if isinstance(key, (str, int)) and key not in self._keys:
                self._keys[key] = None

    def _watermark(self) -> int:
        wm = self.now()
        for r in self._remotes.values():
            if r.watermark < wm:
                wm = r.watermark
        return wm

    def _drain(self, force: bool = False) -> None:
        """Write every held op at or below the global watermark (all of them when forced)."""
        wm = self._watermark() if not force else None
        heap = self._heap
        while heap and (wm is None or heap[0][0] <= wm):
            t, _, op = heapq.heappop(heap)
            if t < self._last_time:  # cannot happen with well-behaved sources; keep the op
                self._stats.late += 1
                op = {**op, "time": self._last_time}
                t = self._last_time
            self._last_time = t
            self.writer.append(op)
            self._count(op)
        self._stats.pending = len(heap)

    def _count(self, op: Op) -> None:
        s = self._stats
        s.written += 1
        typ = op.get("type")
        if typ == "invoke" or typ is None:
            return
        f = str(op.get("f"))
        per = s.by_f.get(f)
        if per is None:
            per = s.by_f[f] = {"ok": 0, "fail": 0, "info": 0}
        per[typ] = per.get(typ, 0) + 1
        proc = op.get("process")
        if isinstance(proc, int) and not isinstance(proc, bool):
            if typ == "ok":
                s.ok += 1
            elif typ == "fail":
                s.fail += 1
            else:
                s.info += 1
            if op.get("error"):
                s.last_error = str(op["error"])

    # -- the reader thread -------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._read_round()
            except Exception as exc:  # noqa: BLE001 - never let the funnel die silently
                with self._lock:
                    self._stats.last_error = f"recorder: {type(exc).__name__}: {exc}"[:300]
                self._stop.wait(0.05)

    def _read_round(self) -> None:
        """One wait on every remote pipe, then read, reap the dead, and write what is safe."""
        with self._lock:
            conns: dict[Any, _Remote] = {r.conn: r for r in self._remotes.values()}
        if not conns:
            self._stop.wait(0.02)
            return
        try:
            ready = wait(list(conns), timeout=0.05)
        except OSError:
            ready = []
        for conn in ready:
            self._read_one(conns[conn])
        self._reap_dead()
        with self._lock:
            self._drain()

    def _read_one(self, r: _Remote) -> None:
        """Take one message from a remote source; end the source on EOF or on `bye`."""
        try:
            data = r.conn.recv_bytes()
        except (EOFError, OSError):
            self._end_remote(r, clean=False)
            return
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._end_remote(r, clean=False)
            return
        with self._lock:
            r.hello = True
            for op in msg.get("ops", ()):
                if not isinstance(op, dict) or not isinstance(op.get("time"), int):
                    self._stats.last_error = f"{r.name}: malformed op dropped: {op!r}"[:300]
                    continue
                self._push(op)
            wm = msg.get("wm")
            if isinstance(wm, int) and wm > r.watermark:
                r.watermark = wm
            if msg.get("error"):
                self._stats.last_error = str(msg["error"])
            if msg.get("fatal"):
                r.fatal = str(msg["fatal"])
        if msg.get("bye"):
            self._end_remote(r, clean=True)

    def _reap_dead(self) -> None:
        with self._lock:
            candidates = [r for r in self._remotes.values() if r.alive is not None]
        for r in candidates:
            if r.alive is not None and not r.alive():
                # The process is gone: take what is still in the pipe, then end the source.
                try:
                    while r.name in self._remotes and r.conn.poll(0):
                        self._read_one(r)
                except (EOFError, OSError):
                    pass
                if r.name in self._remotes:
                    self._end_remote(r, clean=False)

    def _end_remote(self, r: _Remote, clean: bool) -> None:
        with self._lock:
            if self._remotes.get(r.name) is not r:
                return
            del self._remotes[r.name]
            self._stats.live_sources = len(self._remotes)
            if not clean:
                self._stats.lost_sources.append(r.name)
            self._drain()
        try:
            r.conn.close()
        except OSError:
            pass

    # -- reading the counters ------------------------------------------------------------------
    def stats(self) -> RecorderStats:
        """A consistent copy of the counters (safe from any thread)."""
        with self._lock:
            s = self._stats
            return RecorderStats(written=s.written, pending=len(self._heap), ok=s.ok,
                                 fail=s.fail, info=s.info,
                                 by_f={f: dict(c) for f, c in s.by_f.items()},
                                 last_error=s.last_error, live_sources=len(self._remotes),
                                 lost_sources=list(s.lost_sources), late=s.late)

    @property
    def max_process(self) -> int:
        """The largest integer process id recorded so far (-1 when none)."""
        with self._lock:
            return self._max_process

    def keys(self) -> list[Any]:
        """The keys (str or int) of the client ops recorded so far, in first-seen order: what
        the final reads must cover. As many as the workload used (not one per op)."""
        with self._lock:
            return list(self._keys)

    # -- the end -------------------------------------------------------------------------------
    def flush(self, timeout: float = 5.0) -> None:
        """Write everything pending. Waits up to `timeout` for remote sources to end first;
        any still live are then drained of what they already sent and detached (listed in
        `lost_sources`). Local sources stay usable afterwards (e.g. for heal ops after Ctrl-C).
        """
        if self._reader is not None and self._reader.is_alive():
            self.wait_remotes(timeout=timeout)
            self._stop.set()
            self._reader.join(timeout=2.0)
            self._reader = None
        with self._lock:
            remotes = list(self._remotes.values())
        for r in remotes:  # the reader is stopped: read what is left ourselves
            try:
                while r.name in self._remotes and r.conn.poll(0):
                    self._read_one(r)
            except (EOFError, OSError):
                pass
            self._end_remote(r, clean=False)
        with self._lock:
            self._drain(force=True)

    def close(self, timeout: float = 5.0) -> None:
        """flush(timeout), then close the history writer. Idempotent."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self.writer.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RemoteSink:
    """The worker-process end of a remote source: stamps ops and ships them in batches.

    Stamping and buffering happen under one lock, and a batch's watermark is read under that
    same lock when the buffer is swapped out, so every op stamped later carries a time at or
    after the watermark: the recorder's promise holds exactly, whatever the thread interleaving.
    Batches are sent under a second lock so they reach the pipe in the order they were cut.
    """

    def __init__(self, conn: Connection, t0_ns: int, interval: float = BATCH_INTERVAL):
        self.conn = conn
        self.t0_ns = t0_ns
        self.interval = interval
        self.lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._buf: list[Op] = []
        self._error: str | None = None
        self._closed = threading.Event()
        self.broken = False  # the parent is gone (pipe closed)
        self._thread: threading.Thread | None = None

    def record(self, op: Op) -> Op:
        """Stamp `op` now and buffer it; returns the stamped op."""
        with self.lock:
            return self.record_locked(op)

    def record_locked(self, op: Op) -> Op:
        """`record` for callers already holding `self.lock` (to make a state change and its
        op one atomic step)."""
        op = _stamped(op, time.monotonic_ns() - self.t0_ns)
        self._buf.append(op)
        return op

    def backlog(self) -> int:
        """Ops stamped but not yet sent: producers pause while it is over MAX_BACKLOG, so a
        recorder that cannot keep up slows the clients instead of filling memory."""
        return len(self._buf)

    def error(self, message: str) -> None:
        """Report a worker-side problem (shown as the recorder's last_error)."""
        with self.lock:
            self._error = message[:500]

    def send(self, bye: bool = False, fatal: str | None = None) -> None:
        """Cut a batch now and send it (with the watermark); quiet if the parent is gone."""
        with self._send_lock:
            with self.lock:
                ops, self._buf = self._buf, []
                wm = time.monotonic_ns() - self.t0_ns
                err, self._error = self._error, None
            msg: dict[str, Any] = {"ops": ops, "wm": wm}
            if err:
                msg["error"] = err
            if bye:
                msg["bye"] = True
            if fatal:
                msg["fatal"] = fatal[:2000]
            if self.broken:
                return
            try:
                self.conn.send_bytes(_dumps(msg))
            except (OSError, ValueError):
                self.broken = True

    def _loop(self) -> None:
        while not self._closed.wait(self.interval):
            self.send()
            if self.broken:
                return

    def start(self) -> None:
        """Send a first (hello) batch, then one every `interval`."""
        self.send()
        self._thread = threading.Thread(target=self._loop, name="chaos-sink", daemon=True)
        self._thread.start()

    def close(self, fatal: str | None = None) -> None:
        """Send what is left with `bye` (the source ends cleanly) and close the pipe."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.send(bye=True, fatal=fatal)
        try:
            self.conn.close()
        except OSError:
            pass
