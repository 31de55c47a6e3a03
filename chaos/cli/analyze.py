"""`chaos analyze PATH...`: check recorded or imported histories offline and give a verdict.

Each PATH is a history file (our JSONL, a Jepsen history.edn, a Porcupine log: recognised by
content unless --format says) or a run directory (its history.jsonl). The checkers follow
from the ops present unless --checker names them. For each PATH we print a human summary
(or, with --json, one JSON object per line) and write the results next to the history:

    run directory DIR              -> DIR/results.json
    a file named history.jsonl     -> results.json beside it (the run directory's file)
    any other file F               -> F.results.json beside it

An input file is never overwritten (such a target is skipped with a warning), and a directory
we cannot write to is a warning, not a failure: the verdict is still printed.

With --junit FILE, FILE gets one JUnit testsuite per PATH (chaos.report.junit: a testcase
per checker and one for the verdict; a PATH that could not be read is an error case).

Exit code (DESIGN §9), over all PATHs: 4 if any was bad input, else 1 if any had anomalies,
else 2 if any was undecided, else 0.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import click

from chaos.checkers import CHECKERS
from chaos.checkers.sharded import Digest, analyze_path
from chaos.errors import BadInput, ChaosError, ExitCode, verdict_exit_code
from chaos.history.importers.detect import FORMATS, detect, load_any, resolve
from chaos.history.model import History
from chaos.history.stream import Doubt
from chaos.history.summary import format_summary
from chaos.store import check_output_file, dumps_json

#: how bad each outcome is when several PATHs are combined
RANK = {ExitCode.VALID: 0, ExitCode.UNKNOWN: 1, ExitCode.INVALID: 2, ExitCode.SETUP: 3,
        ExitCode.BAD_INPUT: 4}


def results_path(path: str | Path) -> Path:
    """Where results for the history at `path` go (see the module doc)."""
    p = Path(path)
    if p.is_dir():
        return p / "results.json"
    if p.name == "history.jsonl":
        return p.with_name("results.json")
    return p.with_name(p.name + ".results.json")


def _status(text: str | None) -> None:
    """On a terminal, show what is being done (big histories take seconds); else nothing."""
    if not sys.stderr.isatty():
        return
    sys.stderr.write("\r\033[K" + (f"chaos: {text}" if text else ""))
    sys.stderr.flush()


def analyze_one(path: str, fmt: str, checker_names: list[str] | None,
                opts: dict[str, Any]) -> tuple[dict[str, Any], History | Digest, str]:
    """Load and check one history; returns (json-able outcome, history, format used).

    Our JSONL goes through chaos.checkers.sharded (bounded memory, any length); what that
    path doubts (a bad line: the in-memory reader names it; a counter history) and the
    imported formats are read in memory.
    """
    from chaos.checkers import run_checkers, select_checkers
    from chaos.report.results import results_document

    used = detect(path) if fmt == "auto" else fmt
    _status(f"reading {path} ({used})...")
    history: History | Digest | None = None
    try:
        if used == "jsonl":
            try:
                outcome, history = analyze_path(resolve(path), checker_names or None, opts,
                                                status=_status)
            except Doubt:
                history = None
        if history is None:
            history = load_any(path, used)
            # The history is a few million long-lived, cycle-free objects: every full GC
            # pass would rescan them (~1 s per million ops each time). Freezing moves them
            # out of the collector's sight while the checkers run; refcounting frees them.
            gc.freeze()
            checkers = select_checkers(history, checker_names or None)
            _status(f"checking {len(history.pairs)} ops: "
                    f"{', '.join(checkers) or 'no checker'}...")
            outcome = run_checkers(history, checkers, opts)
    finally:
        gc.unfreeze()  # leave the collector as we found it (tests run many analyses)
        _status(None)
    # the results document (one shape: results.json of a run, chaos run --json, this); when
    # no checker applies, run_checkers' reasons say so
    doc = results_document(outcome, history=history, path=str(path), fmt=used)
    return doc, history, used


def write_results(path: str, doc: dict[str, Any], inputs: set[Path]) -> str | None:
    """Write results.json for `path`; returns a warning instead of failing."""
    target = results_path(path)
    try:
        if target.resolve() in inputs:
            return f"not writing {target}: it is one of the inputs"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(dumps_json(doc, indent=True) + b"\n")
        tmp.replace(target)
    except OSError as exc:
        return f"could not write {target}: {exc.strerror or exc}"
    return None


@click.command("analyze")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="History format; auto recognises it by content.")
@click.option("--checker", "checkers", multiple=True, metavar="NAME",
              help=f"Run only this checker (repeatable): {', '.join(CHECKERS)}. "
                   "Default: from the ops present.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per PATH (one line each) instead of the summary.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="S", help="Time budget per checker, in seconds (the linearizable "
                                "search stops at it and says unknown).")
@click.option("--results/--no-results", "write", default=True, show_default=True,
              help="Write results.json next to each history.")
@click.option("--junit", "junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Also write JUnit XML to FILE: a testsuite per PATH, a "
                                  "testcase per checker and one for the verdict (unknown and "
                                  "unreadable input are errors, never passes).")
@click.pass_context
def analyze(ctx: click.Context, paths: tuple[str, ...], fmt: str, checkers: tuple[str, ...],
            as_json: bool, time_limit: float | None, write: bool, junit: Path | None) -> None:
    """Check recorded or imported histories and print the verdict.

    \b
    PATH is a history file (JSONL, Jepsen EDN, Porcupine log) or a run directory.
    Exit: 0 valid, 1 anomalies, 2 unknown, 4 bad input (the worst over all PATHs).
    """
    opts: dict[str, Any] = {}
    if time_limit is not None:
        opts["time_limit"] = time_limit
    inputs = set()
    for p in paths:
        try:
            inputs.add(resolve(p).resolve())
        except (ChaosError, OSError):
            pass
    if junit is not None:
        check_output_file(junit, "--junit")  # before the work, not after it
    from chaos.report.junit import suite_name, write_junit

    worst = ExitCode.VALID
    suites: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            doc, history, used = analyze_one(path, fmt, list(checkers), opts)
        except ChaosError as exc:
            code = ExitCode(int(exc.exit_code))
            click.echo(f"chaos: error: {exc}", err=True)
            if as_json:
                err_doc = {"path": path, "error": str(exc), "exit_code": int(code)}
                click.echo(dumps_json(err_doc).decode())
            suites.append((suite_name(path), {"valid": "unknown", "results": {},
                                              "reasons": [f"not analysed: {exc}"]}))
        else:
            suites.append((suite_name(path), doc))
            code = verdict_exit_code(doc["valid"])
            problem = write_results(path, doc, inputs) if write else None
            if as_json:
                click.echo(dumps_json(doc).decode())
            else:
                click.echo(format_summary(path, doc, history, used))
            if problem:
                click.echo(f"chaos: warning: {problem}", err=True)
        if RANK[code] > RANK[worst]:
            worst = code
    if junit is not None:
        write_junit(None, junit, suites=suites)
    sys.stdout.flush()
    ctx.exit(int(worst))


__all__ = ["analyze", "analyze_one", "results_path", "BadInput"]
