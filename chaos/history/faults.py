"""Which nemesis ops open and close fault windows: one rule for checkers, explanations and plots.

Ours (chaos.nemesis): "start-X"/"stop-X" (X = partition, latency, ...), "kill"/"restart",
"pause"/"resume", and "heal", which undoes everything still applied (it resumes paused nodes,
restarts killed ones and heals the network), so it closes every open window. Jepsen's bare
"start"/"stop" (its default partitioner) open and close a window of kind "fault".
"""
from __future__ import annotations

from typing import Any, Literal

Action = Literal["open", "close", "close-all"]

OPENERS = {"kill": "kill", "pause": "pause", "start": "fault"}
CLOSERS = {"restart": "kill", "resume": "pause", "stop": "fault"}


def classify(f: Any) -> tuple[Action, str | None] | None:
    """("open"|"close"|"close-all", kind) for a nemesis op's f; None when it is no window edge."""
    if not isinstance(f, str):
        return None
    if f.startswith("start-"):
        return "open", f[len("start-"):]
    if f.startswith("stop-"):
        return "close", f[len("stop-"):]
    if f in OPENERS:
        return "open", OPENERS[f]
    if f in CLOSERS:
        return "close", CLOSERS[f]
    if f == "heal":
        return "close-all", None
    return None
