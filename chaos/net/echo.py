"""A tiny threaded TCP echo server: the upstream for proxy tests, benchmarks and link probes.

Real sockets and threads (no mocks): it binds 127.0.0.1 port 0, echoes every byte back, counts
what it received (so a test can tell "my bytes arrived but the reply was dropped" from "my
bytes never arrived"), and `close()` shuts the listener and every connection.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Self

from chaos.target import Addr


class EchoServer:
    """Echo on `addr`; `received` counts bytes received over all connections."""

    def __init__(self, host: str = "127.0.0.1", echo: bool = True, port: int = 0) -> None:
        self._sock = socket.create_server((host, port), backlog=128)
        self.addr = Addr(host, self._sock.getsockname()[1])
        self.echo = echo
        self.received = 0
        self.peers: list[tuple[str, int]] = []  # the source address of every connection
        #: called with each connection's source address
        self.on_accept: Callable[[tuple[str, int]], None] | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="echo", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn)
                self.peers.append(peer[:2])
            if self.on_accept is not None:
                self.on_accept(peer[:2])
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(256 * 1024)
                if not data:
                    return
                with self._lock:
                    self.received += len(data)
                if self.echo:
                    conn.sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        """Stop accepting and close every connection (idempotent)."""
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """`python3 -m chaos.net.echo --host H --port P [--peers FILE]`: echo until killed.

    With --peers, every connection's source address is appended to FILE ("ip port" lines):
    the transparent mesh's tests run it in containers to see who a node's peers look like.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m chaos.net.echo")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", default=None)
    args = parser.parse_args(argv)
    server = EchoServer(args.host, port=args.port)
    if args.peers:
        def log(peer: tuple[str, int]) -> None:
            with open(args.peers, "a") as out:
                out.write(f"{peer[0]} {peer[1]}\n")
        server.on_accept = log
    print(f"echo on {server.addr}", flush=True)
    threading.Event().wait()  # until a signal ends the process


if __name__ == "__main__":
    main()
