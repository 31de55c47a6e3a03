"""`chaos targets [TARGET]`: the registered targets, or one target (a name or a .py path),
with their workloads, -O options, the --net backends that apply and the optional faults
they take."""
from __future__ import annotations

import click

from chaos import plugins
from chaos.net.base import describe_backends
from chaos.target import optional_faults


def _describe(name: str, ref: str, target: object) -> None:
    wl = ", ".join(sorted(getattr(target, "workloads", ()) or ()))
    click.echo(f"{name}  ({ref})  workloads: {wl or '?'}")
    for line in describe_backends(target, brief=True):  # which --net backends apply
        click.echo(f"    --net {line}")
    optional = sorted(optional_faults(target))  # docs/faults.md
    click.echo(f"    --nemesis clock/member/membership: {', '.join(optional) or 'none'} "
               "(other fault kinds: every target)")
    for opt, spec in sorted((getattr(target, "options", {}) or {}).items()):
        choices = f" [{'|'.join(map(str, spec.choices))}]" if spec.choices else ""
        click.echo(f"    -O {opt}={spec.default}{choices}  {spec.help}")


@click.command()
@click.argument("target", required=False, metavar="[TARGET]")
def targets(target: str | None) -> None:
    """List targets (built-in and from the chaos.targets entry-point group) and their -O options.

    With TARGET (a name or a path to a .py file, as `chaos run --target` takes), only that
    one; a target that cannot be loaded is then one error line, exit 4.
    """
    if target is not None:
        ref = plugins.resolve_ref(target)
        loaded = plugins.load_target(ref)  # BadInput naming every problem
        _describe(loaded.name, ref, loaded)
        return
    for name, ref in sorted(plugins.available_targets().items()):
        try:
            one = plugins.load_target(ref)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            click.echo(f"{name}  ({ref})  cannot load: {exc}")
            continue
        _describe(name, ref, one)
