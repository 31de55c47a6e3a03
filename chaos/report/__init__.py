"""The self-contained HTML report of a run: verdict, config, per-checker anomalies, plots.

`render(history, results, out_path)` writes one HTML file with its plots embedded as base64
PNG data URIs and its CSS inline, so the file can be mailed, attached to a CI run or opened
years later with nothing beside it. Reporting is separate from checking: it only reads the
history and the results (live CheckResult objects or the dicts of results.json).

`write_junit(results, path, suite_name=...)` writes the CI view of the same results.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

import jinja2
import numpy as np

from chaos.history.model import History
from chaos.report.junit import write_junit
from chaos.report.plots import (MAX_POINTS, ClientOps, data_uri, latency_png, leadership_png,
                                throughput_png)
from chaos.report.results import normalize_results, verdict_word
from chaos.report.sample import SAMPLE_ABOVE, Sample, sample_history
from chaos.report.timeline import fault_windows, lanes, leader_overlaps

__all__ = ["render", "render_file", "write_junit", "normalize_results", "build_context"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_ANOMALIES_SHOWN = 100   # per checker; the rest are counted, not listed
MAX_OPS_PER_ANOMALY = 12
MAX_VALUE_CHARS = 160       # op values in anomaly tables (a set read can be huge)
#: config keys shown at the top, in this order, with the label a person reads
CONFIG_KEYS = [
    ("target", "target"), ("options", "options"), ("target_options", "options"),
    ("workload", "workload"), ("nemesis", "nemesis"), ("nemesis_interval", "nemesis interval"),
    ("runtime", "runtime"), ("nodes", "nodes"), ("concurrency", "concurrency"),
    ("rate", "rate"), ("seed", "seed"), ("time_limit", "time limit"),
    ("duration", "duration"), ("started", "started"), ("partition_shape", "partition shape"),
    ("latency_ms", "latency (ms)"), ("run_id", "run"),
]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["show"] = _show
    return env


def _show(value: Any) -> str:
    """A value as a person reads it in a table cell: strings bare, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _show_stat(value: Any) -> str:
    """Like _show, but a long nested value (perf's latency percentiles) is indented JSON."""
    text = _show(value)
    if isinstance(value, (dict, list)) and len(text) > 80:
        try:
            return json.dumps(value, default=str, ensure_ascii=False, indent=1)
        except (TypeError, ValueError):
            return text
    return text


def _clip(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A value cut to `limit` characters: a final read of 5,000 elements, listed under each of
    600 lost writes, would otherwise make the report tens of megabytes (results.json has it all)."""
    text = _show(value)
    if len(text) <= limit:
        return text
    size = f", {len(value):,} items" if isinstance(value, (list, dict)) else ""
    return f"{text[:limit]}… ({len(text):,} chars{size})"


def _ms(ns: Any) -> str:
    return f"{ns / 1e6:,.1f}" if isinstance(ns, (int, float)) and not isinstance(ns, bool) else ""


def _secs(ns: Any) -> str:
    return f"{ns / 1e9:.3f}" if isinstance(ns, (int, float)) and not isinstance(ns, bool) else ""


class _OpLookup:
    """history line `index` -> the op; ops are usually in index order, so try the position first."""

    def __init__(self, history: History):
        self.ops = history.ops
        self._by_index: dict[int, dict[str, Any]] | None = None

    def get(self, index: int) -> dict[str, Any] | None:
        if 0 <= index < len(self.ops) and self.ops[index].get("index", index) == index:
            return self.ops[index]
        if self._by_index is None:
            self._by_index = {int(op.get("index", pos)): op for pos, op in enumerate(self.ops)}
        return self._by_index.get(index)


def _op_row(index: int, op: dict[str, Any] | None) -> dict[str, str]:
    if op is None:
        return {"index": str(index), "process": "", "type": "(not in history)", "f": "",
                "key": "", "value": "", "node": "", "time_ms": ""}
    return {"index": str(op.get("index", index)), "process": _show(op.get("process")),
            "type": _show(op.get("type")), "f": _show(op.get("f")),
            "key": "" if op.get("key") is None else _show(op.get("key")),
            "value": _clip(op.get("value")), "node": "" if op.get("node") is None
            else _show(op.get("node")), "time_ms": _ms(op.get("time"))}


def _config_rows(config: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The highlighted settings; `chaos run` nests them under "config" (beside versions, argv)."""
    config = _flat_config(config)
    if not config:
        return []
    rows, seen = [], set()
    for key, label in CONFIG_KEYS:
        if key in config and label not in seen and config[key] not in (None, {}, []):
            value = config[key]
            if isinstance(value, Mapping):
                value = " ".join(f"{k}={_show(v)}" for k, v in value.items())
            rows.append((label, _show(value)))
            seen.add(label)
    return rows


def _flat_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """config.json's settings at top level; `chaos run` nests them under "config"."""
    if not config:
        return {}
    inner = config.get("config")
    if isinstance(inner, Mapping):
        return {**inner, **{k: v for k, v in config.items() if k != "config"}}
    return dict(config)


def _default_title(history: History, config: Mapping[str, Any] | None) -> str:
    """"chaos: kvlite, set workload, nemesis partition+kill" from the config, else the file."""
    cfg = _flat_config(config)
    if cfg.get("test_name"):
        return f"chaos: {cfg['test_name']}"
    if cfg.get("target"):
        parts = [str(cfg["target"])]
        if cfg.get("workload"):
            parts.append(f"{cfg['workload']} workload")
        nem = cfg.get("nemesis")
        if nem:
            parts.append("nemesis " + ("+".join(map(str, nem)) if isinstance(nem, list)
                                       else str(nem)))
        return "chaos: " + ", ".join(parts)
    return f"chaos report: {history.source}" if history.source else "chaos report"


def _history_summary(history: History, ops: ClientOps) -> dict[str, Any]:
    pairs = history.pairs
    counts: dict[str, dict[str, int]] = {name: {} for name in ops.f_names}
    for typ in ("ok", "fail", "info"):
        per_f = np.bincount(ops.f_codes[ops.type == typ], minlength=len(ops.f_names))
        for name, n in zip(ops.f_names, per_f):
            counts[name][typ] = int(n)
    return {"source": history.source, "lines": len(history.ops), "operations": len(pairs),
            "client": len(ops), "nemesis": int((pairs["process"] == "nemesis").sum()),
            "monitor": int((pairs["process"] == "monitor").sum()),
            "duration_s": f"{ops.end_s:.3f}", "by_f": sorted(counts.items()),
            "warnings": list(history.warnings)}


def _checker_views(res: dict[str, Any], lookup: Any
                   ) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    """Per-checker template data, and the anomaly marks for the plots.

    Anomalies are numbered A1, A2, ... across all checkers, so a label on a plot finds its
    row in the tables. Only the first MAX_ANOMALIES_SHOWN per checker are listed; every one
    is marked on the plots.
    """
    marks: list[tuple[int, str, str]] = []
    checkers: list[dict[str, Any]] = []
    number = 0
    for name, r in res["results"].items():
        shown: list[dict[str, Any]] = []
        for a in r["anomalies"]:
            number += 1
            label = f"A{number}"
            if a["time"] is not None:
                marks.append((a["time"], label, a["severity"]))
            if len(shown) < MAX_ANOMALIES_SHOWN:
                idxs = a["ops"][:MAX_OPS_PER_ANOMALY]
                shown.append({**a, "label": label, "time_s": _secs(a["time"]),
                              "key_text": "" if a["key"] is None else _show(a["key"]),
                              "details_text": _clip(a["details"], 300) if a["details"] else "",
                              "op_rows": [_op_row(i, lookup.get(i)) for i in idxs],
                              "ops_omitted": len(a["ops"]) - len(idxs)})
        checkers.append({"name": name, "verdict": verdict_word(r["valid"]),
                         "stats": [(k, _show_stat(v)) for k, v in r["stats"].items()],
                         "warnings": [f"unknown because: {x}" for x in r["reasons"]]
                         + r["warnings"], "error": r["error"],
                         "anomalies": shown,
                         "anomalies_omitted": len(r["anomalies"]) - len(shown),
                         "anomaly_count": sum(a["severity"] == "anomaly" for a in r["anomalies"]),
                         "warning_count": sum(a["severity"] == "warning" for a in r["anomalies"])})
    return checkers, marks


def build_context(history: History | None, results: Mapping[str, Any] | None, *,
                  config: Mapping[str, Any] | None = None,
                  title: str | None = None, sample: Sample | None = None) -> dict[str, Any]:
    """Everything the template shows, plots included (the slow part: three PNGs). With a
    `sample` (chaos.report.sample: a big history read in one bounded pass) instead of the
    whole `history`, the page is drawn from it and says so."""
    res = normalize_results(results)
    lookup: Any
    if sample is not None:
        history = sample.history()
        ops, tput, lookup = sample.latency_ops(), sample.throughput_ops(), sample.cited
        sampled = (f" {len(ops):,} of {sample.client:,} shown: every fail/info first, a "
                   "uniform sample of ok." if len(ops) < sample.client else "")
    else:
        assert history is not None
        ops = tput = ClientOps.from_history(history)
        lookup = _OpLookup(history)
        sampled = (f" {MAX_POINTS:,} of {len(ops):,} shown: every fail/info, a sample of ok."
                   if len(ops) > MAX_POINTS else "")
    windows = fault_windows(history)
    runs = lanes(history, end_time=int(ops.end_s * 1e9))  # leader bars: the checker's
    overlaps = leader_overlaps(history)

    checkers, marks = _checker_views(res, lookup)
    n_anomalies = sum(c["anomaly_count"] for c in checkers)
    n_warnings = sum(c["warning_count"] for c in checkers)

    plots = [
        {"title": "Latency", "uri": data_uri(latency_png(ops, windows, marks)),
         "alt": "latency of client operations over time",
         "caption": "Each point is one client operation at its invoke time; colour is the "
                    "outcome, marker shape the operation. Shaded spans are faults; dashed "
                    "lines are anomalies (numbered as in the tables below), or ticks along "
                    "the top edge when there are many." + sampled},
        {"title": "Throughput", "uri": data_uri(throughput_png(tput, windows, marks)),
         "alt": "completions per second over time by outcome",
         "caption": "Completions per time bin, by outcome, over every operation."},
    ]
    if runs:
        plots.append({"title": "Leadership",
                      "uri": data_uri(leadership_png(runs, overlaps, windows, marks, ops.end_s)),
                      "alt": "role of each node over time as seen by the monitor",
                      "caption": "Role of each node from the monitor's status polls. Red "
                                 "spans: two nodes claimed leadership at once."})
    verdict = verdict_word(res["valid"])
    return {
        "title": title or _default_title(history, config),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "verdict": verdict,
        "notes": res["notes"] + ([sample.note] if sample is not None else []),
        "anomaly_count": n_anomalies, "warning_count": n_warnings,
        "config_rows": _config_rows(config),
        "config_json": json.dumps(config, indent=2, default=str, sort_keys=True) if config else "",
        "history": sample.summary() if sample is not None else _history_summary(history, ops),
        "faults": [{"kind": w.kind, "start_s": _secs(w.start),
                    "end_s": _secs(w.end) if w.end is not None else "(not stopped)",
                    "detail": w.detail, "outcome": w.outcome, "index": w.start_index}
                   for w in windows],
        "overlaps": [{"start_s": _secs(o.start), "end_s": _secs(o.end),
                      "length_ms": _ms(o.end - o.start), "same_term": o.same_term,
                      "leaders": ", ".join(f"{n} (term {_show(t)})" if t is not None
                                           else f"{n} (no term)" for n, t in o.leaders)}
                     for o in overlaps],
        "has_monitor": bool(runs), "plots": plots, "checkers": checkers,
    }


def cited_indexes(results: Mapping[str, Any] | None) -> set[int]:
    """The op indexes the report's anomaly tables list (the first ones of each checker)."""
    res = normalize_results(results)
    return {int(i) for r in res["results"].values() for a in r["anomalies"][:MAX_ANOMALIES_SHOWN]
            for i in a["ops"][:MAX_OPS_PER_ANOMALY]}


def render_file(path: str | os.PathLike[str], results: Mapping[str, Any] | None,
                out_path: str | os.PathLike[str], *, config: Mapping[str, Any] | None = None,
                title: str | None = None, lines: int | None = None) -> Path:
    """The report of the JSONL history at `path`: read whole up to SAMPLE_ABOVE lines, else
    from a bounded Sample (chaos.report.sample). `lines`: the count if known."""
    from chaos.history.reader import read_history
    if lines is None:
        lines = count_lines(path, stop=SAMPLE_ABOVE + 1)
    if lines <= SAMPLE_ABOVE:
        return render(read_history(path), results, out_path, config=config, title=title)
    sample = sample_history(path, cited_indexes(results))
    return render(None, results, out_path, config=config, title=title, sample=sample)


def count_lines(path: str | os.PathLike[str], stop: int) -> int:
    """Newlines in the file, counting stopped once past `stop`."""
    n = 0
    with open(path, "rb") as fh:
        while n <= stop:
            block = fh.read(8 << 20)
            if not block:
                break
            n += block.count(b"\n")
    return n


def render(history: History | None, results: Mapping[str, Any] | None,
           out_path: str | os.PathLike[str], *, config: Mapping[str, Any] | None = None,
           title: str | None = None, sample: Sample | None = None) -> Path:
    """Write the HTML report to `out_path` (parents created, written atomically); return its path.

    `results` is run_checkers' {"valid", "results": {name: CheckResult or dict}}; `config`
    is the run's config.json content (target, options, nemesis, seed, ...), shown when given.
    `sample` replaces `history` for a big one (build_context).
    """
    html = _env().get_template("report.html.j2").render(
        **build_context(history, results, config=config, title=title, sample=sample))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
