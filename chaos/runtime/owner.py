"""Which controller process owns a test's containers, and whether it still runs.

The docker runtime labels every container and network with the controller's host name,
pid, process start time and boot id (`controller_labels`). `chaos down` removes only tests
whose controller is provably gone (`owner_state` is "gone"): a pid that no longer exists, or
one that now belongs to another process (different start time or another boot). Tests run
from another host, or created before these labels existed, cannot be checked and are kept
("unknown") unless `chaos down --all` or `--test ID` asks for them. Linux /proc only.
"""
from __future__ import annotations

import os
import socket
from typing import Mapping

HOST = "chaos.controller.host"
PID = "chaos.controller.pid"
START = "chaos.controller.start"
BOOT = "chaos.controller.boot"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    # fields after the command name, which is in parentheses and may hold spaces
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else None


def controller_labels() -> dict[str, str]:
    """Labels naming this process as the owner of the containers it creates."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), START: process_start(pid) or "",
            BOOT: _boot_id()}


def owner_state(labels: Mapping[str, str]) -> tuple[str, str]:
    """("alive" | "gone" | "unknown", why) for a container's or network's labels."""
    host, pid, start = labels.get(HOST), labels.get(PID), labels.get(START)
    if not host or not pid or not start:
        return "unknown", "no controller labels (made by an older chaos)"
    if host != socket.gethostname():
        return "unknown", f"controller on another host ({host}, pid {pid})"
    if labels.get(BOOT) and labels[BOOT] != _boot_id():
        return "gone", f"controller pid {pid} ran before the last reboot"
    try:
        now = process_start(int(pid))
    except ValueError:
        return "unknown", f"bad controller pid label {pid!r}"
    if now is None:
        return "gone", f"controller pid {pid} has exited"
    if now != start:
        return "gone", f"controller pid {pid} has exited (the pid now belongs to another process)"
    return "alive", f"controller pid {pid} on {host} is still running"
