"""What the report shows of a history too big to hold: one streaming pass, bounded memory.

The report of a short run reads its whole history (chaos.report.render). A run of an hour
has tens of millions of lines, so above `SAMPLE_ABOVE` lines the report is drawn from a
`Sample` instead, read in one pass with memory independent of the history's length:

- counts (lines, operations by process kind, client ops by f and outcome) and throughput
  (completions per `FINE_S` bin per outcome): streamed aggregates over every operation, so
  the counts table and the throughput plot are exact;
- the latency scatter: at most `max_points` client operations, every fail/info first (up
  to the bound) then a uniform sample of ok ones (reservoir sampling, fixed seed: the same
  history gives the same picture), kept as a few numbers each, not the op lines;
- every non-client op (faults, monitor polls, controller): the timeline, the leadership
  lanes and the fault windows need them all; they grow with the run's length, not its load;
- the lines the listed anomalies cite (their indexes, from results.json).

The page says that it is sampled and how (`Sample.note`).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chaos.history.model import OPEN, History
from chaos.history.reader import BOM
from chaos.report.plots import MAX_POINTS, ClientOps, _factorize

#: histories above this many lines are reported from a Sample
SAMPLE_ABOVE = 500_000
FINE_S = 0.01  # throughput is counted in bins this wide, re-binned for the plot
TYPES = ("ok", "fail", "info")


@dataclass
class Sample:
    """A bounded view of a history: exact counts and throughput, a sample of client ops."""

    source: str
    lines: int = 0
    operations: int = 0
    client: int = 0
    nemesis: int = 0
    monitor: int = 0
    end_ns: int = 0
    by_f: dict[str, dict[str, int]] = field(default_factory=dict)
    bins: dict[str, np.ndarray] = field(default_factory=dict)  # type -> completions per bin
    points: list[tuple[Any, ...]] = field(default_factory=list)  # (f, t0, t1, type)
    context: list[dict[str, Any]] = field(default_factory=list)  # non-client op lines
    cited: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> op line
    max_points: int = MAX_POINTS

    @property
    def note(self) -> str:
        shown = len(self.points)
        return (f"This history has {self.lines:,} lines, so this report is sampled: the "
                f"latency plot shows {shown:,} of {self.client:,} client operations (every "
                f"fail/info first, up to {self.max_points:,}, then a uniform sample of ok "
                f"ones); counts, throughput, faults and leadership use every operation; "
                f"anomalies are listed as results.json has them.")

    def history(self) -> History:
        """The context ops as a History (faults, monitor, leadership: the timeline's input)."""
        return History.from_ops(self.context, source=self.source)

    def latency_ops(self) -> ClientOps:
        """The sampled client ops, as the latency plot reads them."""
        f = np.array([p[0] for p in self.points], dtype=object)
        t0 = np.array([p[1] for p in self.points], dtype=np.int64)
        t1 = np.array([p[2] for p in self.points], dtype=np.int64)
        closed = t1 != OPEN
        comp_s = np.where(closed, t1, 0).astype(np.float64) / 1e9
        comp_s[~closed] = np.nan
        lat = (np.where(closed, t1, self.end_ns) - t0).astype(np.float64) / 1e6
        codes, names = _factorize(f)
        return ClientOps(invoke_s=t0.astype(np.float64) / 1e9, complete_s=comp_s,
                         latency_ms=lat, type=np.array([p[3] for p in self.points], dtype=str),
                         f_codes=codes, f_names=names, end_s=self.end_ns / 1e9)

    def throughput_ops(self) -> ClientOps:
        """Every completion, as bin centres weighted by their counts (the throughput plot)."""
        centres, types, weights = [], [], []
        for typ, counts in self.bins.items():
            nz = np.flatnonzero(counts)
            centres.append((nz + 0.5) * FINE_S)
            types.append(np.full(len(nz), typ))
            weights.append(counts[nz].astype(np.float64))
        c = np.concatenate(centres) if centres else np.zeros(0)
        return ClientOps(invoke_s=c, complete_s=c, latency_ms=np.zeros(len(c)),
                         type=np.concatenate(types) if types else np.zeros(0, dtype=str),
                         f_codes=np.zeros(len(c), dtype=np.int32), f_names=["?"],
                         end_s=self.end_ns / 1e9,
                         weight=np.concatenate(weights) if weights else np.zeros(0))

    def summary(self) -> dict[str, Any]:
        """What the report's history table shows (as chaos.report._history_summary)."""
        return {"source": self.source, "lines": self.lines, "operations": self.operations,
                "client": self.client, "nemesis": self.nemesis, "monitor": self.monitor,
                "duration_s": f"{self.end_ns / 1e9:.3f}", "by_f": sorted(self.by_f.items()),
                "warnings": []}


class _Reservoir:
    """A uniform sample of at most `size` items of a stream (Vitter's algorithm R)."""

    def __init__(self, size: int, rnd: random.Random):
        self.size, self.rnd, self.seen, self.items = size, rnd, 0, []  # type: ignore[var-annotated]

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            j = self.rnd.randrange(self.seen)
            if j < self.size:
                self.items[j] = item


def sample_history(path: str | os.PathLike[str], cited: set[int] = frozenset(),  # type: ignore[assignment]
                   max_points: int = MAX_POINTS, seed: int = 0) -> Sample:
    """Read the JSONL history at `path` once into a Sample (module doc). Lines that do not
    parse are skipped: the report shows what the checkers judged (results.json)."""
    p = Path(path)
    s = Sample(source=str(p), max_points=max_points)
    rnd = random.Random(seed)
    ok, rare = _Reservoir(max_points, rnd), _Reservoir(max_points, rnd)
    open_: dict[Any, tuple[Any, int]] = {}  # client process -> (f, invoke time)
    bins = {t: np.zeros(1024, dtype=np.int64) for t in TYPES}
    loads = orjson.loads
    with open(p, "rb") as fh:
        first = True
        for line in fh:
            if first:
                first = False
                if line.startswith(BOM):
                    line = line[len(BOM):]
            try:
                op = loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(op, dict):
                continue
            s.lines += 1
            t = op.get("time")
            if isinstance(t, int) and t > s.end_ns:
                s.end_ns = t
            idx = op.get("index")
            if idx in cited:
                s.cited[idx] = op
            proc = op.get("process")
            typ = op.get("type")
            if type(proc) is not int:
                s.context.append(op)
                if typ == "invoke":
                    s.operations += 1
                    if proc == "nemesis":
                        s.nemesis += 1
                    elif proc == "monitor":
                        s.monitor += 1
                continue
            if typ == "invoke":
                s.operations += 1
                s.client += 1
                open_[proc] = (op.get("f"), t if isinstance(t, int) else 0)
                continue
            inv = open_.pop(proc, None)
            if inv is None:
                continue
            f, t0 = inv
            t1 = t if isinstance(t, int) else t0
            _count(s, bins, str(f), str(typ), t1)
            (ok if typ == "ok" else rare).add((f, t0, t1, typ))
    for f, t0 in open_.values():  # never completed: info, open to the end
        s.by_f.setdefault(str(f), {k: 0 for k in TYPES})["info"] += 1
        rare.add((f, t0, OPEN, "info"))
    s.bins = {t: b for t, b in bins.items() if b.any()}
    points = list(rare.items)
    if len(points) < max_points:
        room = max_points - len(points)
        keep = ok.items if len(ok.items) <= room else rnd.sample(ok.items, room)
        points += keep
    s.points = points
    return s


def _count(s: Sample, bins: dict[str, np.ndarray], f: str, typ: str, t1: int) -> None:
    row = s.by_f.get(f)
    if row is None:
        row = s.by_f[f] = {k: 0 for k in TYPES}
    if typ in row:
        row[typ] += 1
        b = max(int(t1 / 1e9 / FINE_S), 0)
        arr = bins[typ]
        if b >= len(arr):
            arr = bins[typ] = np.concatenate([arr, np.zeros(max(b + 1, 2 * len(arr)) - len(arr),
                                                            dtype=np.int64)])
        arr[b] += 1
