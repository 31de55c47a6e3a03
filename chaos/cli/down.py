"""`chaos down`: remove every container and network a docker test left behind.

Finds them by label (`chaos.managed=1`, or `chaos.test=<id>` with --test), so it works after a
crash or a SIGKILLed controller. iptables rules made by the iptables backend live inside those
containers' network namespaces and go with them. Images are kept (they are the build cache).
"""
from __future__ import annotations

import time

import click


@click.command()
@click.option("--test", "test_id", default=None, help="Only this test id (default: every chaos test).")
def down(test_id: str | None) -> None:
    """Remove the containers and networks of chaos docker tests (also after a crash)."""
    from chaos.control.engine import docker_client
    from chaos.runtime.docker import remove_test_resources

    started = time.monotonic()
    containers, networks = remove_test_resources(docker_client(), test_id)
    click.echo(f"removed {containers} container(s), {networks} network(s) "
               f"in {time.monotonic() - started:.1f}s")
