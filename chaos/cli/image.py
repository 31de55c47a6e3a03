"""`chaos image build`: build the node images locally (no registry needed), cached by hash."""
from __future__ import annotations

import time

import click

from chaos.plugins import available_targets


class TargetRef(click.ParamType):
    """A registered target name (listed in --help) or a path to a target .py file."""

    name = "target"

    def get_metavar(self, param: click.Parameter, *args: object, **kwargs: object) -> str:
        return "[" + "|".join(sorted(available_targets())) + "|PATH.py]"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from chaos.errors import BadInput
        from chaos.plugins import resolve_ref

        try:
            resolve_ref(value)
        except BadInput as exc:
            self.fail(str(exc).removeprefix("--target: "), param, ctx)
        return value


@click.group()
def image() -> None:
    """Build and inspect the Docker node images."""


@image.command()
@click.option(
    "--target", "targets", multiple=True, type=TargetRef(),
    help="Target whose node image to build: a registered name or a path to a target file "
         "(repeatable; default kvlite). Its Debian packages come from the target itself.",
)
@click.option("--force", is_flag=True, help="Rebuild even when the tagged image exists.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the resulting tags.")
def build(targets: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Build chaos-base and chaos-node-<target> (debootstrap when no registry answers)."""
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image, target_spec

    specs = [target_spec(t) for t in targets or ("kvlite",)]  # bad targets: before the engine
    client = docker_client()
    started = time.monotonic()

    def progress(line: str) -> None:
        if not quiet:
            click.echo(f"[{time.monotonic() - started:6.1f}s] {line}", err=True)

    for target in targets or ("kvlite",):
        tag = ensure_node_image(client, target, force=force, progress=progress)
        click.echo(tag)
    del specs
