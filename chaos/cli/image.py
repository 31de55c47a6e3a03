"""`chaos image build`: build the node images locally (no registry needed), cached by hash."""
from __future__ import annotations

import time

import click

from chaos.images.node import TARGET_PACKAGES


@click.group()
def image() -> None:
    """Build and inspect the Docker node images."""


@image.command()
@click.option(
    "--target", "targets", multiple=True, type=click.Choice(sorted(TARGET_PACKAGES)),
    help="Target whose node image to build (repeatable; default kvlite).",
)
@click.option("--force", is_flag=True, help="Rebuild even when the tagged image exists.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the resulting tags.")
def build(targets: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Build chaos-base and chaos-node-<target> (debootstrap when no registry answers)."""
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image

    client = docker_client()
    started = time.monotonic()

    def progress(line: str) -> None:
        if not quiet:
            click.echo(f"[{time.monotonic() - started:6.1f}s] {line}", err=True)

    for target in targets or ("kvlite",):
        tag = ensure_node_image(client, target, force=force, progress=progress)
        click.echo(tag)
