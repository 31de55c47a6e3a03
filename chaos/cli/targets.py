"""`chaos targets`: list the registered targets and their options."""
from __future__ import annotations

import click

from chaos import plugins
from chaos.net.base import describe_backends


@click.command()
def targets() -> None:
    """List targets (built-in and from the chaos.targets entry-point group) and their -O options."""
    for name, ref in sorted(plugins.available_targets().items()):
        try:
            target = plugins.load_target(ref)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            click.echo(f"{name}  ({ref})  cannot load: {exc}")
            continue
        wl = ", ".join(sorted(getattr(target, "workloads", ()) or ()))
        click.echo(f"{name}  ({ref})  workloads: {wl or '?'}")
        for line in describe_backends(target, brief=True):  # which --net backends apply
            click.echo(f"    --net {line}")
        for opt, spec in sorted((getattr(target, "options", {}) or {}).items()):
            choices = f" [{'|'.join(map(str, spec.choices))}]" if spec.choices else ""
            click.echo(f"    -O {opt}={spec.default}{choices}  {spec.help}")
