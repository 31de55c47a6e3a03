"""Runtimes: where nodes live and how they are controlled (Jepsen's `control` + `os`).

A runtime starts a node's foreground command as a daemon it owns, and stops, kills (SIGKILL),
pauses (SIGSTOP / docker pause) and resumes it. Everything it starts it must be able to undo
in `teardown`, which is idempotent and safe to call from a signal handler path.
"""
from __future__ import annotations

from typing import Protocol


class Runtime(Protocol):
    name: str

    def setup(self, nodes: list[str], store_dir: str) -> None:
        """Prepare hosts/containers for these node names; node data goes under store_dir."""
        ...

    def host(self, node: str) -> str:
        """The address other nodes and the controller use to reach `node` (127.0.0.1 locally)."""
        ...

    def data_dir(self, node: str) -> str:
        """The node's data directory on its host."""
        ...

    def start(self, node: str, argv: list[str]) -> None:
        """Start the node's command in the background; output goes to the node's log file."""
        ...

    def stop(self, node: str, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`. No error when already stopped."""
        ...

    def kill(self, node: str) -> None:
        """SIGKILL the node's process (a crash)."""
        ...

    def pause(self, node: str) -> None:
        """SIGSTOP (freeze without closing sockets)."""
        ...

    def resume(self, node: str) -> None:
        """SIGCONT."""
        ...

    def is_running(self, node: str) -> bool: ...

    def is_paused(self, node: str) -> bool: ...

    def collect_logs(self, node: str, dest_dir: str) -> None:
        """Copy the node's logs into dest_dir (no-op when they already are there)."""
        ...

    def teardown(self) -> None:
        """Kill everything this runtime started; idempotent."""
        ...
