"""Trends per configuration: detection rate, anomaly counts, ops/s and latency over time.

A configuration is target + options + workload + nemesis (RunSummary.config_key): runs of one
configuration with different seeds are samples of the same question ("does this system lose
writes under partitions?"), so their series over the dates say whether it got better or worse.
The plots are inline SVG (no JavaScript, nothing fetched): a page opens offline, forever.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from html import escape
from typing import Callable, Iterable, Sequence

from chaos.archive.index import RunSummary

#: past this many runs, a trend plots daily means instead of every run
MAX_POINTS = 400
#: line colours, cycled (colour-blind safe: Okabe-Ito)
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")


@dataclass(frozen=True)
class ConfigStats:
    """One configuration's totals, for the list of configurations."""

    key: str
    runs: int
    invalid: int
    unknown: int
    last: str

    @property
    def detection_rate(self) -> float:
        """Share of the decided runs that found an anomaly (unknown runs prove nothing)."""
        decided = self.runs - self.unknown
        return self.invalid / decided if decided else 0.0


def configurations(runs: Iterable[RunSummary]) -> list[ConfigStats]:
    """Every configuration in the store with its run counts, most recently run first."""
    acc: dict[str, list[RunSummary]] = defaultdict(list)
    for r in runs:
        acc[r.config_key].append(r)
    out = [ConfigStats(k, len(rs), sum(r.verdict == "invalid" for r in rs),
                       sum(r.verdict == "unknown" for r in rs), max(r.started for r in rs))
           for k, rs in acc.items()]
    return sorted(out, key=lambda c: c.last, reverse=True)


Series = list[tuple[str, float]]   # (ISO date, value)


def series(runs: Sequence[RunSummary]) -> dict[str, dict[str, Series]]:
    """The plotted series of one configuration's runs (in date order), by chart:

    detection rate per day (invalid / decided runs of that day), anomaly counts per kind,
    ops/s, latency p50/p95/p99: per run, or the daily mean past MAX_POINTS runs (a plot of
    thousands of points says no more and costs a page-load). Missing values are left out,
    not zero.
    """
    runs = sorted(runs, key=lambda r: r.started)
    per_run = len(runs) <= MAX_POINTS
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in runs:
        if r.verdict != "unknown":
            d = days[r.started[:10]]
            d[0] += r.verdict == "invalid"
            d[1] += 1
    kinds = sorted({k for r in runs for k in r.anomalies})
    each = "per run" if per_run else "daily mean"

    def line(value: Callable[[RunSummary], float | None]) -> Series:
        pts = [(r.started, v) for r in runs if (v := value(r)) is not None]
        return pts if per_run else _daily_mean(pts)

    return {
        "detection rate (invalid / decided runs, per day)": {
            "rate": [(day, inv / n) for day, (inv, n) in sorted(days.items())]},
        f"anomalies ({each})": {k: line(partial(_count, k)) for k in kinds},
        f"client ops/s ({each})": {"ops/s": line(lambda r: r.ops_per_s)},
        f"latency ms ({each})": {q: line(partial(_quantile, q)) for q in ("p50", "p95", "p99")},
    }


def _count(kind: str, r: RunSummary) -> float | None:
    """A run's anomalies of `kind`; None (no point) for an unknown run that listed none."""
    if r.verdict == "unknown" and kind not in r.anomalies:
        return None
    return float(r.anomalies.get(kind, 0))


def _quantile(q: str, r: RunSummary) -> float | None:
    return r.latency_ms.get(q)


def _daily_mean(points: Series) -> Series:
    acc: dict[str, list[float]] = defaultdict(list)
    for x, y in points:
        acc[x[:10]].append(float(y))
    return [(day, sum(ys) / len(ys)) for day, ys in sorted(acc.items())]


def svg_chart(title: str, lines: dict[str, Series], width: int = 640,
              height: int = 220) -> str:
    """A line chart as an inline <svg>: x = date order, y from 0 to the largest value."""
    pad_l, pad_r, pad_t, pad_b = 52, 12, 24, 36
    xs = sorted({x for pts in lines.values() for x, _ in pts})
    ymax = max((y for pts in lines.values() for _, y in pts), default=0.0) or 1.0
    pos = {x: i for i, x in enumerate(xs)}
    span = max(len(xs) - 1, 1)
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def px(x: str) -> float:
        return pad_l + (w * pos[x] / span if len(xs) > 1 else w / 2)

    def py(y: float) -> float:
        return pad_t + h - h * y / ymax

    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text x="{pad_l}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" '
           'stroke="#888"/>',
           f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#888"/>']
    for frac in (0.0, 0.5, 1.0):
        y = ymax * frac
        out.append(f'<text x="{pad_l - 4}" y="{py(y) + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{_num(y)}</text>')
    if xs:
        for x, anchor in ((xs[0], "start"), (xs[-1], "end")):
            out.append(f'<text x="{px(x):.1f}" y="{pad_t + h + 14}" font-size="10" '
                       f'text-anchor="{anchor}">{escape(x[:16])}</text>')
    else:
        out.append(f'<text x="{pad_l + w / 2}" y="{pad_t + h / 2}" font-size="12" '
                   'text-anchor="middle">no data</text>')
    for i, (name, pts) in enumerate(lines.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                       f'points="{coords}"/>')
        if len(pts) <= 200:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}">'
                    f'<title>{escape(name)} {escape(x)}: {_num(y)}</title></circle>'
                    for x, y in pts]
        out.append(f'<text class="legend" x="{pad_l + 8 + 110 * i}" y="{height - 6}" '
                   f'font-size="11" fill="{colour}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _num(v: float) -> str:
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


__all__ = ["ConfigStats", "configurations", "series", "svg_chart"]
