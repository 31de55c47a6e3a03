"""Spill directories of the bounded-memory analysis: made so that they never outlive their
owner for long, even when it is SIGKILLed (no `finally` runs then).

A directory's name carries its owner's pid and that process's start time
(`chaos-shards-<pid>-<start>-<random>`). Every new analysis first sweeps the directories whose
owner is gone: no such pid, or a pid now used by another process (its start time differs).
Both parts are in the name, so a directory is claimed from the moment it exists (no window
in which a concurrent sweep could take a directory whose owner has not yet marked it).
The parent of an analysis's worker processes owns the directory; the workers only write in it.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "chaos-shards-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-")


def _start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), None when
    there is no such process or no /proc (then only the pid is compared)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields follow the last ")"
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def _alive(pid: int, start: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    now = _start_time(pid)
    return now is None or start == 0 or now == start


def sweep(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the spill directories under `parent` (the temp dir) whose owner is gone;
    returns those removed. Directories of live owners, and anything not named by
    `make_directory`, are left alone."""
    root = Path(parent if parent is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for d in entries:
        m = _NAME.match(d.name)
        if m is None or not d.is_dir() or d.is_symlink():
            continue
        if not _alive(int(m.group(1)), int(m.group(2))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def make_directory(parent: str | os.PathLike[str] | None = None) -> Path:
    """A new spill directory owned by this process, after sweeping the dead owners' ones.
    The caller removes it when done (`shutil.rmtree`); if it is killed, the next one does."""
    sweep(parent)
    pid = os.getpid()
    start = _start_time(pid) or 0
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-{start}-", dir=parent))
