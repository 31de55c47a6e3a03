"""`chaos ci summary`: a Markdown table of the verdicts in a store, for a CI job's page.

Each run directory under the given paths (found by its config.json or results.json; the
`latest` links are not followed, so no run counts twice) is one row: the test, seed, verdict,
anomaly counts by kind, and the first reason or anomaly. A run that has a config.json but no
results.json did not finish (an infrastructure failure or a cancelled job) and says so: a
missing verdict is never shown as a pass. Runs are sorted worst first.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from chaos.errors import BadInput

#: verdict -> (rank, how the table shows it); worst first
SHOWN = {"invalid": (0, "❌ invalid"), "not finished": (1, "🛠 not finished"),
         "unknown": (2, "⚠️ unknown"), "valid": (3, "✅ valid")}
MAX_CELL = 200


@dataclass(frozen=True)
class Row:
    name: str
    seed: Any
    verdict: str
    anomalies: str
    first: str
    run_dir: str


def run_dirs(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Run directories under `paths` (a path may be one itself), each once."""
    seen: set[Path] = set()
    for start in map(Path, paths):
        if not start.exists():
            raise BadInput(f"no such file or directory: {start}")
        if start.is_file():  # a results.json named directly
            start = start.parent
        for root, dirs, files in os.walk(start):  # os.walk does not follow symlinked dirs
            dirs.sort()
            if "results.json" in files or "config.json" in files:
                real = Path(root).resolve()
                if real not in seen:
                    seen.add(real)
                    yield Path(root)
                dirs[:] = []  # node logs below are not runs


def _cell(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def row(run_dir: Path) -> Row:
    """One run's line of the table."""
    from chaos.report.junit import suite_name
    from chaos.report.results import normalize_results, verdict_word

    config = _json(run_dir / "config.json")
    config = config if isinstance(config, dict) else None
    seed = ((config or {}).get("config") or {}).get("seed", "")
    results = _json(run_dir / "results.json")
    name = suite_name(run_dir, config)
    if not isinstance(results, dict):
        return Row(name, seed, "not finished", "", "no results.json: the run did not reach a "
                   "verdict (infrastructure failure, or the job was cancelled)", str(run_dir))
    try:
        norm = normalize_results(results)
    except (TypeError, ValueError):
        return Row(name, seed, "not finished", "", "results.json is not a results document",
                   str(run_dir))
    verdict = verdict_word(norm["valid"])
    counts: dict[str, int] = {}
    firsts: list[str] = []
    for checker, r in norm["results"].items():
        for a in r["anomalies"]:
            if a["severity"] == "anomaly":
                counts[a["kind"]] = counts.get(a["kind"], 0) + 1
                if len(firsts) < 1:
                    firsts.append(f"{checker}: {a['message']}")
    reasons = [str(x) for x in results.get("reasons") or []]
    first = (reasons[:1] if verdict == "unknown" else firsts) or reasons[:1] or [""]
    return Row(name, seed, verdict, ", ".join(f"{n} {k}" for k, n in counts.items()),
               first[0], str(run_dir))


def markdown(rows: list[Row], title: str = "chaos verdicts") -> str:
    """The summary: a heading with the counts, then the table (worst first)."""
    rows = sorted(rows, key=lambda r: (SHOWN[r.verdict][0], r.name, str(r.seed)))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    tally = ", ".join(f"{counts[v]} {v}" for v in SHOWN if v in counts) or "no runs found"
    lines = [f"## {title}: {len(rows)} run{'s' if len(rows) != 1 else ''} ({tally})", ""]
    if rows:
        lines += ["| test | seed | verdict | anomalies | first anomaly / why | run directory |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {_cell(r.name)} | {_cell(str(r.seed))} | {SHOWN[r.verdict][1]} | "
                  f"{_cell(r.anomalies)} | {_cell(r.first)} | `{_cell(r.run_dir)}` |"
                  for r in rows]
    lines += ["", "Exit-code policy: 1 (anomalies) fails the job, 2 (unknown) is flagged, "
                  "3 is an infrastructure failure. Repeat a run: "
                  "`chaos run --replay RUNDIR`.", ""]
    return "\n".join(lines)
