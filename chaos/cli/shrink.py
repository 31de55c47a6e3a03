"""`chaos shrink RUNDIR`: the smallest fault schedule that still fails (chaos.archive.shrink).

Re-runs are real runs of the stored configuration (same target, options, workload, runtime,
cluster size), recorded under OUT/runs/ (a store of their own, so they do not crowd the
nightly store's list), each with a fresh seed and a time limit just past its last fault.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from chaos.errors import BadInput, ExitCode


def _describe(schedule: list[Any]) -> str:
    return "; ".join(f"{s.kind} {s.params.get('shape', '') or ''} {s.start_s:g}-{s.stop_s:g} s"
                     .replace("  ", " ") for s in schedule)


@click.command()
@click.argument("rundir", type=click.Path())
@click.option("--tries", default=3, show_default=True, type=click.IntRange(1, 100),
              help="K: a reduction is kept when the anomaly reproduces in at least 1 of K "
                   "tries; the minimal schedule's rate is measured over K tries.")
@click.option("--budget", default=1800.0, show_default=True, type=click.FloatRange(1, None),
              metavar="S", help="Seconds of search; then the best so far is kept (the final "
                                "rate measurement comes after).")
@click.option("--kind", default=None,
              help="The anomaly kind to keep (default: the run's most frequent one).")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Where the minimal config.json, shrink.json and the re-runs go "
                   "[default: RUNDIR/shrink].")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def shrink(rundir: str, tries: int, budget: float, kind: str | None, out_dir: str | None,
           quiet: bool) -> int:
    """Shrink a failing run's fault schedule to a minimal one that fails the same way.

    Writes OUT/config.json (`chaos run --replay OUT` runs it) and OUT/shrink.json (every
    step). Exit 0 when the minimal schedule reproduced in the final tries, 2 when it did not,
    130 on Ctrl-C (the best schedule so far is written), 4 for a bad RUNDIR.
    """
    from chaos import run as runmod
    from chaos.archive import shrink as sh
    from chaos.archive.index import summarize
    from chaos.cli.run import load_replay
    from chaos.progress import Progress
    from chaos.store import read_json

    run_dir = Path(rundir).resolve()
    out = Path(out_dir) if out_dir else run_dir / "shrink"
    runs_store = str(out / "runs")
    base = load_replay(str(run_dir), runs_store)   # BadInput (exit 4) names the file
    kind = kind or sh.default_kind(run_dir)
    config_doc = read_json(run_dir / "config.json")
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    seed0 = int(base.seed)

    def run_once(schedule: list[Any], i: int) -> tuple[str, int]:
        cfg = runmod.RunConfig.from_dict(base.to_dict())
        cfg.store, cfg.schedule = runs_store, schedule
        cfg.time_limit, cfg.seed = sh.time_limit(schedule), seed0 + 1 + i
        try:
            tgt, ref, wl = runmod.prepare(cfg)
            # on a terminal each re-run shows the run's own live line (ops, current fault)
            progress = Progress(cfg.time_limit, enabled=not quiet and sys.stderr.isatty())
            outcome = runmod.execute(cfg, tgt, ref, wl, progress=progress)
        except KeyboardInterrupt:
            raise sh.Interrupted() from None
        if outcome.interrupted:
            raise sh.Interrupted()
        summary = summarize(outcome.run_dir)
        # only a decided failure counts: an unknown run (a fault not verified, a dead
        # cluster) proves nothing, whatever it listed
        found = summary.anomalies.get(kind, 0) if summary and summary.verdict == "invalid" \
            else 0
        return str(outcome.run_dir), found

    schedule = list(base.schedule or [])
    say(f"chaos shrink: {run_dir}: {len(schedule)} fault events, keeping {kind!r} "
        f"(reproduced in >= 1 of {tries} tries), budget {budget:g} s")
    shrinker = sh.Shrinker(schedule, tries=tries, budget=budget, run_once=run_once, say=say)
    try:
        best = shrinker.run()
    except KeyboardInterrupt:
        shrinker.stopped = "interrupted (Ctrl-C)"
        best = shrinker.best
    final = None
    if not (shrinker.stopped or "").startswith("interrupted"):
        final = sh.rate(run_once, best, tries, say)
        if final.tries < tries:
            shrinker.stopped = "interrupted (Ctrl-C) while measuring the rate"
    doc = sh.write_result(out, run_dir, config_doc, kind, shrinker, final)
    click.echo(f"minimal schedule: {len(best)} of {len(schedule)} fault events: "
               f"{_describe(best)}")
    if final and final.tries:
        click.echo(f"reproduces {kind} in {final.reproduced}/{final.tries} tries "
                   f"({final.reproduced / final.tries:.0%}); anomalies per try: {final.counts}")
    if shrinker.stopped:
        click.echo(f"search stopped early: {shrinker.stopped}; this is the best found so far")
    click.echo(f"replay: chaos run --replay {out}   (every step: {out / 'shrink.json'}, "
               f"{doc['seconds']:g} s)")
    if (shrinker.stopped or "").startswith("interrupted"):
        return 130
    if final is None or not final.reproduced:
        return int(ExitCode.UNKNOWN)
    return int(ExitCode.VALID)


__all__ = ["shrink", "BadInput"]
