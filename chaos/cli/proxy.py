"""`chaos proxy serve`: run the embedded Toxiproxy-compatible server in the foreground.

The toxiproxy-server equivalent for users and Docker images: same API, same default address
(127.0.0.1:8474). Ctrl-C or SIGTERM closes every listener and connection and exits 0; an
address that cannot be bound is a setup error (exit 3).
"""
from __future__ import annotations

import asyncio

import click

from chaos.errors import SetupError


@click.group()
def proxy() -> None:
    """The embedded Toxiproxy-compatible server."""


@proxy.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="API listen address.")
@click.option("--port", default=8474, show_default=True, type=click.IntRange(0, 65535),
              help="API port (0 = any free port).")
def serve(host: str, port: int) -> None:
    """Serve the Toxiproxy HTTP API until interrupted."""
    from chaos.net.proxy.__main__ import serve as run

    try:
        asyncio.run(run(host, port))
    except OSError as exc:
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
