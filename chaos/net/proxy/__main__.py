"""`python3 -m chaos.net.proxy [--host H] [--port P]`: run the embedded Toxiproxy server.

Standard library only, for bare `python3` containers. Exits 0 on SIGINT/SIGTERM after closing
every listener and connection; exits 3 (setup error) when the API address cannot be bound.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from chaos.net.proxy.server import VERSION, ProxyServer


async def serve(host: str, port: int, announce: bool = True) -> None:
    """Serve until SIGINT/SIGTERM, then close everything."""
    server = ProxyServer(host, port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if announce:
        print(f"toxiproxy-compatible server {VERSION} listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.net.proxy", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8474, help="API port (default 8474; 0 = any)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
