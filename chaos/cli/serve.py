"""`chaos serve`: browse the store in a web browser (chaos.archive.web).

On start the index (store/index.jsonl) is brought in line with the run directories (runs
added or removed since it was written are summarised or dropped; `--reindex` rebuilds it),
then one line names the URL. Bound to 127.0.0.1 by default: the store holds node logs and
configurations, which are nobody else's business; another --host is taken, with a warning.
"""
from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import click

from chaos.errors import BadInput, SetupError


@click.command()
@click.option("--store", "store_dir", default="store", show_default=True,
              type=click.Path(), help="The store to browse.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port; the URL line says which).")
@click.option("--reindex", is_flag=True,
              help="Rebuild store/index.jsonl from every run directory before serving.")
def serve(store_dir: str, host: str, port: int, reindex: bool) -> None:
    """Serve the store: run list, each run's report and files, trends per configuration."""
    from chaos.archive.web import ArchiveServer

    store = Path(store_dir)
    if not store.is_dir():
        raise BadInput(f"--store {store_dir}: not a directory")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        click.echo(f"chaos serve: warning: --host {host} is not loopback: anyone who reaches "
                   "it can read the store's logs and configurations", err=True)
    try:
        server = ArchiveServer(store, host, port)
    except OSError as exc:
        raise SetupError(f"--host {host} --port {port}: cannot listen: "
                         f"{exc.strerror or exc}") from None
    t0 = time.monotonic()
    added, dropped = server.index.sync(reindex=reindex)
    click.echo(f"chaos serve: {len(server.index.runs)} runs indexed ({added} added, {dropped} "
               f"dropped, {time.monotonic() - t0:.1f} s)", err=True)
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"chaos serve: http://{shown_host}:{server.server_address[1]}/ "
               "(Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
