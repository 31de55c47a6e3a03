"""The `chaos` command: a click group whose subcommands live one per module and load lazily.

Each subcommand module (`chaos/cli/<name>.py`) defines a click command named like the module.
Loading lazily keeps `chaos --help` fast and lets one broken optional part (say, the Docker SDK)
not take the whole CLI down.  Exit codes follow `chaos.errors.ExitCode`; click's own usage
errors are mapped to 4 (bad arguments), as DESIGN §9 requires, instead of click's 2.

A reader that goes away (`chaos run ... | head -2`) does not change the exit code either:
stdout and stderr are guarded so that, once a write meets a broken pipe, further output is
dropped and the command finishes as it would have, with its own verdict code (click would
exit 1, "anomalies", and Python 120 when the final flush fails).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, TextIO

import click

from chaos.errors import ChaosError, ExitCode

#: command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "run": "chaos.cli.run:run",
    "analyze": "chaos.cli.analyze:analyze",
    "report": "chaos.cli.report:report",
    "targets": "chaos.cli.targets:targets",
    "proxy": "chaos.cli.proxy:proxy",
    "image": "chaos.cli.image:image",
    "down": "chaos.cli.down:down",
    "doctor": "chaos.cli.doctor:doctor",
    "serve": "chaos.cli.serve:serve",
    "compare": "chaos.cli.compare:compare",
    "shrink": "chaos.cli.shrink:shrink",
    "ci": "chaos.cli.ci:ci",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name, quiet=True) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name, quiet=False)

    @staticmethod
    def _load(name: str, quiet: bool) -> click.Command | None:
        spec = COMMANDS.get(name)
        if spec is None:
            return None
        module_name, attr = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # the command is not built yet
                return None
            if quiet:
                return None
            raise
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chaos", prog_name="chaos")
def cli() -> None:
    """Jepsen-style chaos testing for leader-follower replicated systems.

    \b
    chaos run --target kvlite --nemesis partition   run a test, check it, write a report
    chaos analyze store/latest                      check a recorded or imported history
    """


class PipeGuard:
    """A text stream whose writes to a closed pipe are dropped instead of raising.

    On the first BrokenPipeError the stream's file descriptor is pointed at /dev/null (so the
    interpreter's final flush succeeds too) and every later write is a no-op. Everything else
    is the wrapped stream's (encoding, isatty, fileno...).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._break()
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._break()

    def _break(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no real fd (tests' in-memory streams)
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group, turning known errors into one line and an exit code."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PipeGuard(sys.stdout), PipeGuard(sys.stderr)
    try:
        _main(argv)
    finally:
        for guard in (sys.stdout, sys.stderr):
            if isinstance(guard, PipeGuard):
                guard.flush()
        sys.stdout, sys.stderr = saved


def _main(argv: list[str] | None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="chaos", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("chaos: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # Name the offending option; exit 4 (bad arguments), not click's 2.
        click.echo(exc.ctx.get_usage() if exc.ctx else "", err=True)
        click.echo(f"chaos: error: {exc.format_message()}", err=True)
        sys.exit(ExitCode.BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"chaos: error: {exc.format_message()}", err=True)
        sys.exit(ExitCode.BAD_INPUT)
    except ChaosError as exc:
        click.echo(f"chaos: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        click.echo("chaos: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: show it, exit "crashed"
        import traceback

        traceback.print_exc()
        click.echo(f"chaos: internal error: {type(exc).__name__}: {exc} (please report this)",
                   err=True)
        sys.exit(ExitCode.SETUP)
    sys.exit(int(rv) if isinstance(rv, int) else 0)
