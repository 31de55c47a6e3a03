"""`chaos report RUNDIR`: (re)write a run's HTML report, and optionally JUnit XML, from its files.

Reads RUNDIR/history.jsonl, RUNDIR/results.json and (if present) RUNDIR/config.json. A
directory holding only a history (copied from elsewhere, or a run killed before its check) is
analysed first, as `chaos analyze RUNDIR` would, and its results.json written; otherwise the
stored results are rendered, not re-checked (that is `chaos analyze`). The exit code is the
verdict's (0 valid, 1 invalid, 2 unknown), so a CI step that only renders the report still
fails on a bad run; 4 means the run directory or one of its files is missing or unreadable.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from chaos.errors import BadInput, verdict_exit_code
from chaos.report.junit import suite_name


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"no {what} in {path.parent}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read {what}: {exc}", where=str(path)) from None


def _analyze_first(rundir: Path) -> tuple[dict[str, Any], Any]:
    """Check RUNDIR's history as `chaos analyze RUNDIR` does and write its results.json."""
    from chaos.cli.analyze import analyze_one, write_results

    click.echo(f"no results.json in {rundir}: analysing history.jsonl first", err=True)
    doc, history, _ = analyze_one(str(rundir), "jsonl", None, {})
    problem = write_results(str(rundir), doc, set())
    if problem:
        click.echo(f"chaos: warning: {problem}", err=True)
    return doc, history


@click.command("report")
@click.argument("rundir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Where to write the HTML report [default: RUNDIR/report.html].")
@click.option("--junit", "junit", type=click.Path(path_type=Path), default=None,
              help="Also write JUnit XML (a testcase per checker and one for the run) to "
                   "this file.")
@click.option("--title", default=None, help="Report title [default: from the run directory].")
def report(rundir: Path, out: Path | None, junit: Path | None, title: str | None) -> int:
    """Write RUNDIR/report.html from the run's history.jsonl, results.json and config.json.

    Without results.json the history is analysed first (and results.json written).
    Exits with the verdict: 0 valid, 1 invalid, 2 unknown; 4 on a missing or bad file.
    """
    if not rundir.is_dir():
        raise BadInput(f"no such run directory: {rundir}")
    hist_path = rundir / "history.jsonl"
    if not hist_path.is_file():
        raise BadInput(f"no history.jsonl in {rundir}")
    if (rundir / "results.json").exists():
        results = _load_json(rundir / "results.json", "results.json")
    else:
        results, _digest = _analyze_first(rundir)  # the report reads the history below
    from chaos.report import render_file, write_junit  # matplotlib: once the inputs exist
    from chaos.report.results import normalize_results

    try:
        norm = normalize_results(results)
    except (TypeError, AttributeError, ValueError) as exc:
        raise BadInput(f"not checker results: {exc}", where=str(rundir / "results.json")) from None
    config_path = rundir / "config.json"
    config = _load_json(config_path, "config.json") if config_path.exists() else None
    if config is not None and not isinstance(config, dict):
        raise BadInput("config.json is not a JSON object", where=str(config_path))
    suite = suite_name(rundir, config)
    if out is not None and out.is_dir():
        out = out / "report.html"
    try:
        path = render_file(hist_path, results, out or rundir / "report.html", config=config,
                           title=title or (None if config else f"chaos report: {suite}"))
        click.echo(f"report: {path}")
        if junit is not None:
            click.echo(f"junit: {write_junit(results, junit, suite_name=suite)}")
    except OSError as exc:  # an unwritable --out/--junit path is a bad argument, not a crash
        raise BadInput(f"cannot write: {exc.strerror or exc}",
                       where=str(exc.filename or out or rundir)) from None
    code = verdict_exit_code(norm["valid"])
    click.echo(f"verdict: {code.name.lower()}")
    return int(code)
