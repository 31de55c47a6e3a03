"""The progress line uses the history's clock (t= seconds since the recorder's t0, the origin
of the verdict's times), not the load phase's own."""
from __future__ import annotations

import io
import time

from chaos.history.writer import HistoryWriter
from chaos.progress import Progress
from chaos.recorder import Recorder


class _Nemesis:
    current = "killed n1 (leader)"


def test_progress_line_shows_history_time_and_load_time_left(tmp_path):
    t0 = time.monotonic_ns() - 7_600_000_000  # the history began 7.6 s ago
    rec = Recorder(HistoryWriter(tmp_path / "history.jsonl"), t0)
    try:
        out = io.StringIO()
        p = Progress(20, every=0, stream=out)
        p.update(5.1, rec, _Nemesis())  # 5.1 s into the load phase
        line = out.getvalue()
        t = float(line.split("t=")[1].split("s")[0])
        assert 7.6 <= t < 30, line  # the history's clock, not the load's 5.1 s
        assert "14.9s of 20s left" in line
        assert "killed n1" in line
    finally:
        rec.close()
