"""The report's three plots, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Figures are built with the object API (`Figure` + `FigureCanvasAgg`), never pyplot, so
rendering touches no global state and works in threads and without a display. All plots
share one x axis (seconds since the test started) so a person can line up an anomaly with
the fault windows and leader changes above and below it. Large histories are downsampled
for the scatter only (failures and timeouts are kept first; they are the interesting ones);
counts and throughput always use every operation.
"""
from __future__ import annotations

import base64
import functools
import io
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from chaos.history.model import OPEN, History, client_mask
from chaos.report.timeline import FaultWindow, LeaderOverlap, RoleRun

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@functools.cache
def _mpl() -> SimpleNamespace:
    """matplotlib's pieces, imported on the first plot: importing matplotlib costs ~0.5-1 s,
    and `chaos ci summary`, JUnit and the sampler import this package without drawing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, NullFormatter
    from matplotlib.transforms import blended_transform_factory

    return SimpleNamespace(FigureCanvasAgg=FigureCanvasAgg, Figure=Figure, Line2D=Line2D,
                           Patch=Patch, FuncFormatter=FuncFormatter,
                           NullFormatter=NullFormatter,
                           blended_transform_factory=blended_transform_factory)


MAX_POINTS = 50_000
TYPE_COLORS = {"ok": "#2ca02c", "fail": "#d62728", "info": "#ff7f0e"}
FAULT_COLORS = {"partition": "#9467bd", "latency": "#17becf", "kill": "#7f7f7f",
                "pause": "#bcbd22"}
OTHER_FAULT_COLOR = "#e377c2"
ROLE_COLORS = {"leader": "#1f4e99", "follower": "#a6c8e8", "candidate": "#ff9f3f",
               "no answer": "#e0e0e0"}
OTHER_ROLE_COLOR = "#c5b0d5"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
WIDTH_IN = 12.0
DPI = 100
MAX_WINDOW_LABELS = 24
MAX_ANOMALY_LABELS = 20
MAX_ANOMALY_LINES = 30


@dataclass
class ClientOps:
    """Client operations as numpy arrays (seconds, milliseconds), computed once per report."""

    invoke_s: np.ndarray
    complete_s: np.ndarray     # NaN when the op never completed
    latency_ms: np.ndarray     # to the end of the history when it never completed
    type: np.ndarray           # "ok" / "fail" / "info"
    f_codes: np.ndarray        # index into f_names
    f_names: list[str]
    end_s: float               # last time seen in the whole history
    weight: np.ndarray | None = None  # ops each entry stands for (a sampled report's bins)

    @classmethod
    def from_history(cls, history: History) -> "ClientOps":
        pairs = history.pairs
        n = len(pairs)
        is_client = client_mask(pairs["process"])
        inv = pairs["invoke_time"].to_numpy()
        comp = pairs["complete_time"].to_numpy()
        closed = comp != OPEN
        end_ns = max(int(inv.max()) if n else 0, int(comp[closed].max()) if closed.any() else 0)
        c_inv, c_comp, c_closed = inv[is_client], comp[is_client], closed[is_client]
        comp_s = np.where(c_closed, c_comp, 0).astype(np.float64) / 1e9
        comp_s[~c_closed] = np.nan
        lat = (np.where(c_closed, c_comp, end_ns) - c_inv).astype(np.float64) / 1e6
        f_codes, f_names = _factorize(pairs["f"].to_numpy()[is_client])
        return cls(invoke_s=c_inv.astype(np.float64) / 1e9, complete_s=comp_s,
                   latency_ms=lat, type=pairs["type"].to_numpy()[is_client].astype(str),
                   f_codes=f_codes, f_names=f_names, end_s=end_ns / 1e9)

    def __len__(self) -> int:
        return len(self.invoke_s)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes into a sorted list of names (as str), so marker shapes are stable per f."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    names = [str(u) for u in uniques]
    order = sorted(range(len(names)), key=names.__getitem__)
    remap = np.empty(len(names), dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    return remap[codes] if len(codes) else codes.astype(np.int32), [names[i] for i in order]


def sample_indexes(types: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Indexes of at most `max_points` ops: every fail/info first, then a uniform sample of ok.

    Deterministic (fixed seed) so the same history always gives the same picture.
    """
    n = len(types)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    rare = np.flatnonzero(types != "ok")
    if len(rare) >= max_points:
        return np.sort(rng.choice(rare, size=max_points, replace=False))
    ok = np.flatnonzero(types == "ok")
    keep = rng.choice(ok, size=max_points - len(rare), replace=False)
    return np.sort(np.concatenate([rare, keep]))


def data_uri(png: bytes) -> str:
    """A base64 data URI, so the HTML report needs no files beside it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    _mpl().FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def fault_color(kind: str) -> str:
    return FAULT_COLORS.get(kind, OTHER_FAULT_COLOR)


def _shade_faults(ax: Any, windows: Sequence[FaultWindow], end_s: float, label: bool) -> list[str]:
    """Shade every fault window; label each (kind: detail) when there are few. Returns kinds."""
    kinds: list[str] = []
    trans = _mpl().blended_transform_factory(ax.transData, ax.transAxes)
    lanes: dict[str, int] = {}
    free_at: dict[int, float] = {}  # label row -> x where the previous label there ends
    lo, hi = ax.get_xlim() if ax.has_data() else (0.0, end_s)
    span = max(end_s, hi - lo, 1e-9)
    for w in windows:
        start = w.start / 1e9
        end = (w.end / 1e9) if w.end is not None else end_s
        color = fault_color(w.kind)
        ax.axvspan(start, max(end, start), color=color, alpha=0.16, lw=0, zorder=0)
        if w.kind not in kinds:
            kinds.append(w.kind)
        lane = lanes.setdefault(w.kind, len(lanes)) % 4
        if label and len(windows) <= MAX_WINDOW_LABELS:
            text = w.kind + (f": {w.detail}" if w.detail else "")
            text += " (not verified)" if "not verified" in w.outcome else ""
            if start < free_at.get(lane, -np.inf):
                continue  # it would print over the previous label in its row
            free_at[lane] = start + span * 0.0062 * (len(text) + 2)  # ~7 pt chars on 12 in
            ax.text(start, 0.98 - 0.07 * lane, " " + text, transform=trans, fontsize=7,
                    color=color, va="top", ha="left", clip_on=True, zorder=5,
                    fontweight="bold",
                    bbox={"facecolor": "white", "alpha": 0.75, "lw": 0, "pad": 1})
    return kinds


def _mark_anomalies(ax: Any, anomalies: Sequence[tuple[int, str, str]], label: bool) -> str | None:
    """Mark anomaly times ((time_ns, label, severity)); returns the legend text, or None.

    Up to MAX_ANOMALY_LINES get full-height lines (the first few labelled A1, A2, ...); more
    than that (600 lost writes in one partition) become a rug of ticks along the top edge, so
    they show where and how dense they are without painting over the data.
    """
    if not anomalies:
        return None
    trans = _mpl().blended_transform_factory(ax.transData, ax.transAxes)
    rug = len(anomalies) > MAX_ANOMALY_LINES
    lo = 0.94 if rug else 0.0
    for sev, color, style in (("anomaly", "#b00020", "--"), ("warning", "#e69500", ":")):
        xs = [t / 1e9 for t, _, s in anomalies if s == sev]
        if xs:
            ax.vlines(xs, lo, 1, transform=trans, colors=color,
                      linestyles="-" if rug else style, lw=0.6 if rug else 0.9, zorder=4)
    if rug:
        return f"anomaly ({len(anomalies)}, ticks at top)"
    if label:
        for t, name, sev in anomalies[:MAX_ANOMALY_LABELS]:
            ax.text(t / 1e9, 0.01, name, transform=trans, fontsize=7, rotation=90,
                    color="#b00020" if sev == "anomaly" else "#a06000", va="bottom",
                    ha="right", clip_on=True, zorder=5)
    return "anomaly"


def _legend(ax: Any, handles: list[Any]) -> None:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
              frameon=False, borderaxespad=0.0)


def _context_handles(kinds: list[str], anomaly_label: str | None) -> list[Any]:
    handles: list[Any] = [_mpl().Patch(color=fault_color(k), alpha=0.35, label=f"fault: {k}")
                          for k in kinds]
    if anomaly_label:
        rug = anomaly_label != "anomaly"
        handles.append(_mpl().Line2D([], [], color="#b00020", ls="-" if rug else "--", lw=1,
                              label=anomaly_label))
    return handles


def _plain_log_axis(ax: Any, y: np.ndarray) -> None:
    """Log scale labelled "40", "100", "0.5" (a person reads ms, not 4x10^1).

    Minor ticks get labels only when the data spans under ~1.5 decades; otherwise the
    labels would collide.
    """
    ax.set_yscale("log")
    plain = _mpl().FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = (float(y.min()), float(y.max())) if len(y) else (1.0, 1.0)
    if hi / max(lo, 1e-9) < 10 ** 1.5:
        def some(v: float, _pos: int) -> str:  # 2, 3, 5 x 10^k: enough to read, no crowding
            mant = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
            return f"{v:g}" if mant in (2, 3, 5) else ""
        ax.yaxis.set_minor_formatter(_mpl().FuncFormatter(some))
    else:
        ax.yaxis.set_minor_formatter(_mpl().NullFormatter())


def latency_png(ops: ClientOps, windows: Sequence[FaultWindow],
                anomalies: Sequence[tuple[int, str, str]], *,
                max_points: int = MAX_POINTS) -> bytes:
    """Latency (ms, log scale) of each client op at its invoke time; colour: outcome, marker: f."""
    fig = _mpl().Figure(figsize=(WIDTH_IN, 4.2))
    ax = fig.add_subplot()
    idx = sample_indexes(ops.type, max_points)
    shown = len(idx)
    x, y = ops.invoke_s[idx], np.maximum(ops.latency_ms[idx], 1e-3)
    types, fcodes = ops.type[idx], ops.f_codes[idx]
    handles: list[Any] = []
    for typ in ("ok", "fail", "info"):  # rare outcomes drawn last, on top
        for code in range(len(ops.f_names)):
            m = (types == typ) & (fcodes == code)
            if m.any():
                ax.plot(x[m], y[m], ls="none", marker=MARKERS[code % len(MARKERS)],
                        ms=2.6 if typ == "ok" else 3.4, mew=0, alpha=0.6 if typ == "ok" else 0.9,
                        color=TYPE_COLORS.get(typ, "#333333"), zorder=2 if typ == "ok" else 3)
    present_types = [t for t in ("ok", "fail", "info") if (ops.type == t).any()]
    handles += [_mpl().Line2D([], [], ls="none", marker="o", color=TYPE_COLORS[t], label=t)
                for t in present_types]
    handles += [_mpl().Line2D([], [], ls="none", marker=MARKERS[c % len(MARKERS)],
                              color="#444444", label=f"f={name}")
                for c, name in enumerate(ops.f_names)]
    kinds = _shade_faults(ax, windows, ops.end_s, label=True)
    marked = _mark_anomalies(ax, anomalies, label=True)
    _legend(ax, handles + _context_handles(kinds, marked))
    if len(ops):
        _plain_log_axis(ax, y)
    ax.set_xlim(0, max(ops.end_s, 1e-9))
    ax.set_xlabel("time since test start (s)")
    ax.set_ylabel("latency (ms)")
    title = "Latency of client operations"
    if shown < len(ops):
        title += f" ({shown:,} of {len(ops):,} shown: every fail/info, a sample of ok)"
    if not len(ops):
        title += " (no client operations)"
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(True, which="major", alpha=0.25)
    return _png(fig)


def bin_width(duration_s: float) -> float:
    """1 s bins for tests of 20 s to 5 min; finer for short ones, coarser to keep <= 300 bins."""
    if duration_s <= 0:
        return 1.0
    want = duration_s / 300 if duration_s > 300 else (1.0 if duration_s >= 20 else duration_s / 50)
    for w in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60,
              120, 300, 600, 1800, 3600):
        if w >= want:
            return float(w)
    return 3600.0


def throughput_png(ops: ClientOps, windows: Sequence[FaultWindow],
                   anomalies: Sequence[tuple[int, str, str]]) -> bytes:
    """Completions per second over time, one line per outcome (every op counted, none sampled)."""
    fig = _mpl().Figure(figsize=(WIDTH_IN, 3.2))
    ax = fig.add_subplot()
    end = max(ops.end_s, 1e-9)
    width = bin_width(end)
    edges = np.arange(0.0, end + width, width)
    if len(edges) < 2:
        edges = np.array([0.0, width])
    handles: list[Any] = []
    done = ~np.isnan(ops.complete_s)
    for typ in ("ok", "fail", "info"):
        m = done & (ops.type == typ)
        if not m.any():
            continue
        counts, _ = np.histogram(ops.complete_s[m], bins=edges,
                                 weights=None if ops.weight is None else ops.weight[m])
        ax.stairs(counts / width, edges, color=TYPE_COLORS[typ], lw=1.3, zorder=3)
        handles.append(_mpl().Line2D([], [], color=TYPE_COLORS[typ], lw=1.5, label=typ))
    kinds = _shade_faults(ax, windows, ops.end_s, label=False)
    marked = _mark_anomalies(ax, anomalies, label=False)
    _legend(ax, handles + _context_handles(kinds, marked))
    ax.set_xlim(0, end)
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.12 if top > 0 else 1)  # headroom for fault labels and anomaly ticks
    ax.set_xlabel("time since test start (s)")
    ax.set_ylabel("completions / s")
    unit = f"{width:g} s bins"
    ax.set_title(f"Throughput by outcome ({unit})", fontsize=10, loc="left")
    ax.grid(True, alpha=0.25)
    return _png(fig)


def leadership_png(runs: Sequence[RoleRun], overlaps: Sequence[LeaderOverlap],
                   windows: Sequence[FaultWindow], anomalies: Sequence[tuple[int, str, str]],
                   end_s: float) -> bytes:
    """One lane per node coloured by the role the monitor saw; leader runs labelled with term.

    Spans with two leaders at once are shaded red across all lanes (dark red when both
    leaders share a term: election safety broken).
    """
    nodes = sorted({r.node for r in runs})
    fig = _mpl().Figure(figsize=(WIDTH_IN, 1.3 + 0.45 * max(len(nodes), 1)))
    ax = fig.add_subplot()
    end = max(end_s, max((r.end for r in runs), default=0) / 1e9, 1e-9)
    lane = {n: i for i, n in enumerate(nodes)}
    by_role: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in runs:
        by_role.setdefault(r.role, {}).setdefault(r.node, []).append(
            (r.start / 1e9, max(r.end - r.start, 0) / 1e9))
    roles_present = []
    for role, per_node in by_role.items():
        roles_present.append(role)
        color = ROLE_COLORS.get(role, OTHER_ROLE_COLOR)
        for node, spans in per_node.items():
            ax.broken_barh(spans, (lane[node] - 0.35, 0.7), facecolors=color,
                           edgecolor="none", zorder=2,
                           hatch="///" if role == "no answer" else None)
    labelled = 0
    min_w = end * 0.012
    for r in runs:
        if r.role == "leader" and r.term is not None and labelled < 200:
            w = (r.end - r.start) / 1e9
            if w >= min_w:
                ax.text(r.start / 1e9 + w / 2, lane[r.node], f"t{r.term}", color="white",
                        fontsize=7, ha="center", va="center", zorder=3, clip_on=True)
                labelled += 1
    trans = _mpl().blended_transform_factory(ax.transData, ax.transAxes)
    for o in overlaps:
        color = "#8b0000" if o.same_term else "#e31a1c"
        ax.axvspan(o.start / 1e9, o.end / 1e9, color=color, alpha=0.3, lw=0, zorder=2.5)
        if len(overlaps) <= MAX_WINDOW_LABELS:
            who = ", ".join(f"{n}" + (f" (t{t})" if t is not None else "") for n, t in o.leaders)
            if all(t is None for _, t in o.leaders):
                who += " (no terms)"
            ax.text(o.start / 1e9, 1.0, f"2 leaders: {who}", transform=trans, fontsize=7,
                    color=color, va="bottom", ha="left", fontweight="bold", clip_on=False)
    kinds = _shade_faults(ax, windows, end, label=False)
    marked = _mark_anomalies(ax, anomalies, label=False)
    order: list[str] = [r for r in ("leader", "follower", "candidate", "no answer")
                        if r in roles_present]
    order += sorted(r for r in roles_present if r not in order)
    handles: list[Any] = [_mpl().Patch(facecolor=ROLE_COLORS.get(r, OTHER_ROLE_COLOR),
                                hatch="///" if r == "no answer" else None, label=r)
                          for r in order]
    if overlaps:
        handles.append(_mpl().Patch(color="#e31a1c", alpha=0.5, label="two leaders"))
        if any(o.same_term for o in overlaps):
            handles.append(_mpl().Patch(color="#8b0000", alpha=0.5,
                                        label="two leaders, same term"))
    _legend(ax, handles + _context_handles(kinds, marked))
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(-0.6, max(len(nodes), 1) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, end)
    ax.set_xlabel("time since test start (s)")
    ax.set_title("Leadership seen by the monitor (role per node; leader bars show the term)",
                 fontsize=10, loc="left", pad=14 if overlaps else 6)
    ax.grid(True, axis="x", alpha=0.25)
    return _png(fig)
