"""The live progress line of `chaos run`: time left, ops ok/fail/info, the current fault.

On a terminal it redraws one line in place (rich); elsewhere (CI logs, pipes) it prints a plain
line every `every` seconds so logs stay readable. It only reads counters; it never blocks.

Its clock is the history's (`t=`: seconds since the recorder's t0, the origin of every op
time and of the anomalies' explanations), so "t=7.6s killed n1" on the terminal is "kill n1
at 7.6 s" in the verdict; the time left counts down the load phase (--time-limit).
"""
from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


class Progress:
    def __init__(self, time_limit: float, *, every: float = 5.0, enabled: bool = True,
                 stream: Any = None) -> None:
        self.time_limit = time_limit
        self.every = every
        self.enabled = enabled
        self.console = Console(file=stream or sys.stderr)
        self._live: Live | None = None
        self._last_plain = 0.0
        self._last_draw = 0.0

    def _line(self, elapsed: float, recorder: Any, nemesis: Any) -> str:
        c = _counts(recorder)
        fault = getattr(nemesis, "current", None) or "no fault"
        left = max(0.0, self.time_limit - elapsed)
        now = getattr(recorder, "now", None)
        t = now() / 1e9 if callable(now) else elapsed  # history time (see the module doc)
        return (f"[t={t:5.1f}s, {left:4.1f}s of {self.time_limit:.0f}s left] "
                f"ok {c['ok']}  fail {c['fail']}  info {c['info']}  | {fault}")

    def update(self, elapsed: float, recorder: Any, nemesis: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.console.is_terminal:
            if now - self._last_draw < 0.25:
                return
            self._last_draw = now
            if self._live is None:
                self._live = Live(console=self.console, auto_refresh=False, transient=False)
                self._live.start()
            self._live.update(Text(self._line(elapsed, recorder, nemesis)), refresh=True)
        elif now - self._last_plain >= self.every:
            self._last_plain = now
            print(self._line(elapsed, recorder, nemesis), file=self.console.file, flush=True)

    def phase(self, text: str) -> None:
        if self.enabled:
            self.close()
            print(f"... {text}", file=self.console.file, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _counts(recorder: Any) -> dict[str, int]:
    """ok/fail/info totals of client ops, from the recorder's stats snapshot."""
    stats = recorder.stats()
    return {"ok": stats.ok, "fail": stats.fail, "info": stats.info}
