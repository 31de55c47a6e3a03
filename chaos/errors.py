"""Exit codes and the exceptions that map onto them.

Flow control is kept apart from faults (as Locust does): a `ChaosError` carries the exit code
the CLI must end with, so every layer can raise the right kind of problem and only the CLI
decides how it is printed.
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes of every `chaos` command (DESIGN §9; a contract for CI scripts)."""

    VALID = 0          # every checker said valid
    INVALID = 1        # anomalies found
    UNKNOWN = 2        # a checker could not decide, or a fault could not be verified
    SETUP = 3          # setup / infrastructure error (engine down, port busy, node won't start)
    BAD_INPUT = 4      # bad arguments or bad input files


class ChaosError(Exception):
    """Base of errors the CLI prints as one line (no traceback) and exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.SETUP


class BadInput(ChaosError):
    """Bad CLI arguments or an unreadable/invalid input file. `where` is "file:line" if known."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SetupError(ChaosError):
    """The infrastructure failed: a node, the proxy, the Docker engine, an SSH host."""

    exit_code = ExitCode.SETUP


def verdict_exit_code(valid: bool | str) -> ExitCode:
    """Map a merged checker verdict (True / False / "unknown") to the exit code."""
    if valid is True:
        return ExitCode.VALID
    if valid is False:
        return ExitCode.INVALID
    return ExitCode.UNKNOWN
