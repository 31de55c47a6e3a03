"""Streaming history writer: one JSON object per line, written and flushed per op.

Each line goes out in a single `os.write` on an O_APPEND descriptor, so a process killed at
any instant leaves every earlier op on disk and at most one truncated last line (which the
reader reports and skips). Not thread-safe by itself: the run controller owns the one writer
and workers send it their ops.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

import orjson

from chaos.history.model import Op


def now_ns(t0_ns: int) -> int:
    """Nanoseconds since `t0_ns` on CLOCK_MONOTONIC, which all processes of a host share."""
    return time.monotonic_ns() - t0_ns


class HistoryWriter:
    """Append ops to a history.jsonl, assigning consecutive `index` values from 0."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        self._next = 0
        self._lock = threading.Lock()

    def append(self, op: Op) -> Op:
        """Write `op` (must carry type, process, f, time); returns it with its index set."""
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"history {self.path} is closed")
            op = {"index": self._next, **{k: v for k, v in op.items() if k != "index"}}
            os.write(self._fd, orjson.dumps(op, option=orjson.OPT_NON_STR_KEYS) + b"\n")
            self._next += 1
            return op

    @property
    def count(self) -> int:
        return self._next

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> "HistoryWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
