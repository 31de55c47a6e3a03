"""The kvlite node process: `python3 -m targets.kvlite.server --name n1 --listen H:P ...`.

One process per node and one TCP port for everything (clients, peers, status, admin).
Standard library only, so it runs in bare python3 containers. Logs go to
`<data-dir>/node.log`. SIGTERM/SIGINT close the log cleanly; SIGKILL is the crash case the
log format is designed for.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from . import election
from .node import Node, Options
from .protocol import ProtocolError, decode, encode, validate_request

MAX_LINE = 64 << 20


class Connection(asyncio.Protocol):
    """One client or peer connection: newline-delimited requests, replies by id."""

    def __init__(self, node: Node):
        self.node = node
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.strip():
                self.handle_line(line)
        self.buf = buf[start:]
        if len(self.buf) > MAX_LINE:
            self.send({"id": None, "type": "error", "error": f"request line over {MAX_LINE} bytes"})
            self.buf = b""
            if self.transport is not None:
                self.transport.close()

    def send(self, reply: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(reply))

    def handle_line(self, line: bytes) -> None:
        rid = None
        try:
            msg = decode(line)
            rid = msg.get("id")
            op = validate_request(msg)
            result = self.node.dispatch(msg, op)
        except ProtocolError as exc:
            self.send({"id": rid, "type": "error", "error": f"bad request: {exc}",
                       "node": self.node.name})
            return
        except (KeyError, TypeError, ValueError) as exc:
            self.send({"id": rid, "type": "error", "error": bad_request(exc),
                       "node": self.node.name})
            return
        if isinstance(result, dict):
            result["id"] = rid
            self.send(result)
        elif isinstance(result, asyncio.Future):
            result.add_done_callback(lambda t: self._finish(t, rid))
        else:
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: self._finish(t, rid))

    def _finish(self, task: asyncio.Future[dict[str, Any]], rid: Any) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if isinstance(exc, (KeyError, TypeError, ValueError)):
                error = bad_request(exc)
            else:
                logging.getLogger("kvlite").error("handler failed: %r", exc, exc_info=exc)
                error = f"request failed: {exc!r}"
            self.send({"id": rid, "type": "error", "error": error, "node": self.node.name})
            return
        reply = task.result()
        reply["id"] = rid
        self.send(reply)


def bad_request(exc: Exception) -> str:
    """A one-line reason for a request whose fields are missing or of the wrong type."""
    if isinstance(exc, KeyError):
        return f"bad request: missing field {exc}"
    return f"bad request: {type(exc).__name__}: {exc}"


def parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_peer(text: str) -> tuple[str, tuple[str, int]]:
    name, sep, addr = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, parse_addr(addr)


def arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvlite", description="a kvlite node")
    p.add_argument("--name", required=True, help="this node's name (n1, n2, ...)")
    p.add_argument("--listen", required=True, type=parse_addr, help="HOST:PORT to bind")
    p.add_argument("--peer", action="append", default=[], type=parse_peer,
                   help="NAME=HOST:PORT, how this node reaches a peer (repeat per peer)")
    p.add_argument("--data-dir", required=True, help="log, snapshot, meta and node.log")
    p.add_argument("--replication", default="async",
                   choices=["async", "sync", "semi-sync", "quorum"])
    p.add_argument("--failover", default="naive", choices=["none", "naive", "majority"])
    p.add_argument("--read-from", default="leader", choices=["leader", "any"])
    p.add_argument("--routing", default="client", choices=["client", "forward"])
    p.add_argument("--heartbeat-ms", type=int, default=100)
    p.add_argument("--election-timeout-ms", type=int, default=1000)
    p.add_argument("--fsync", default="never", choices=["always", "never"])
    p.add_argument("--initial-leader", default=None, help="first leader (none/naive failover)")
    p.add_argument("--snapshot-every", type=int, default=10000,
                   help="compact the log after this many applied entries")
    p.add_argument("--commit-wait-ms", type=int, default=5000,
                   help="a write waiting longer for replication gets an unknown-outcome error")
    p.add_argument("--rejoin", action="store_true",
                   help="the data dir was wiped: rejoin as a learner (no vote, acks not "
                        "counted) until caught up to the leader's commit index")
    p.add_argument("--replication-lag-ms", type=int, default=50,
                   help="asynchronous followers get log batches at most this often (ms)")
    return p


def options_from_args(a: argparse.Namespace) -> Options:
    return Options(replication=a.replication, failover=a.failover, read_from=a.read_from,
                   routing=a.routing, heartbeat_ms=a.heartbeat_ms,
                   election_timeout_ms=a.election_timeout_ms, fsync=a.fsync,
                   initial_leader=a.initial_leader, snapshot_every=a.snapshot_every,
                   commit_wait_ms=a.commit_wait_ms, replication_lag_ms=a.replication_lag_ms,
                   rejoin=a.rejoin)


async def serve(a: argparse.Namespace) -> None:
    peers = dict(a.peer)
    if a.name in peers:
        raise SystemExit(f"kvlite: --peer names this node itself ({a.name})")
    node = Node(a.name, peers, a.data_dir, options_from_args(a))
    node.start()
    loop = asyncio.get_running_loop()
    host, port = a.listen
    server = await loop.create_server(lambda: Connection(node), host, port, reuse_address=True)
    node.note(f"listening on {host}:{port}; peers {peers}; {options_from_args(a)}")
    watcher = asyncio.create_task(election.watch(node))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    node.note("shutting down")
    watcher.cancel()
    server.close()
    node.stop()


def main(argv: list[str] | None = None) -> None:
    a = arg_parser().parse_args(argv)
    os.makedirs(a.data_dir, exist_ok=True)
    logging.basicConfig(
        filename=os.path.join(a.data_dir, "node.log"), level=logging.INFO,
        format=f"%(asctime)s {a.name} %(levelname)s %(message)s")
    try:
        asyncio.run(serve(a))
    except OSError as exc:
        logging.getLogger("kvlite").error("cannot serve: %s", exc)
        print(f"kvlite: cannot serve on {a.listen[0]}:{a.listen[1]}: {exc}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
