"""`chaos ci init` (write a nightly CI workflow) and `chaos ci summary` (verdicts as Markdown).

The logic lives in chaos.ci (the workflow) and chaos.ci.summary (the table); docs/ci.md is
the guide, with the exit-code policy the generated files apply.
"""
from __future__ import annotations

from pathlib import Path

import click


@click.group("ci")
def ci() -> None:
    """Chaos in CI: a nightly workflow and a summary of its verdicts."""


@ci.command("init")
@click.option("--provider", type=click.Choice(["github", "gitlab"]), default="github",
              show_default=True, help="github: .github/workflows/chaos-nightly.yml; gitlab: "
                                      ".gitlab-ci.yml.")
@click.option("--target", "targets", multiple=True, metavar="NAME|PATH",
              help="A target of the matrix (repeatable; default kvlite).")
@click.option("--nemesis", "nemeses", multiple=True, metavar="KINDS",
              help="A nemesis of the matrix, as chaos run --nemesis takes it (repeatable; "
                   "default partition and kill).")
@click.option("--seeds", default=3, show_default=True, type=int,
              help="Seeds per target and nemesis (1..N): each cell is one seed.")
@click.option("--time-limit", default=60.0, show_default=True, type=float, metavar="S",
              help="chaos run --time-limit of each cell.")
@click.option("--run-args", default="", metavar="ARGS",
              help="More chaos run options for every cell, e.g. "
                   "\"--workload set -O replication=quorum -O failover=majority\".")
@click.option("--install", default="chaos", show_default=True, metavar="SPEC",
              help="What `pip install` installs chaos from (a version, wheel or git URL).")
@click.option("--cron", default="17 3 * * *", show_default=True,
              help="When it runs (UTC; GitLab: set it in the pipeline schedule).")
@click.option("--output", default=".", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The repository's root, under which the file is written.")
@click.option("--force", is_flag=True, help="Overwrite an existing workflow file.")
def init(provider: str, targets: tuple[str, ...], nemeses: tuple[str, ...], seeds: int,
         time_limit: float, run_args: str, install: str, cron: str, output: Path,
         force: bool) -> None:
    """Write a ready nightly workflow: a matrix of targets x nemeses x seeds, Docker images
    cached, the store uploaded, JUnit published, a verdict summary; exit-code policy: 1
    fails the job, 2 is flagged, 3 is an infrastructure failure.

    Refuses to overwrite an existing file without --force (exit 4).
    """
    from chaos.ci import Workflow, commands, write

    workflow = Workflow(provider=provider, targets=targets or ("kvlite",),
                        nemeses=nemeses or ("partition", "kill"), seeds=seeds,
                        time_limit=time_limit, run_args=run_args, install=install, cron=cron)
    path = write(workflow, output, force=force)
    cells = len(workflow.targets) * len(workflow.nemeses) * workflow.seeds
    click.echo(f"wrote {path}: {cells} cells nightly ({cron} UTC)")
    click.echo("each cell runs (try it here first):")
    for line in commands(workflow):
        click.echo(f"  {line}")


@ci.command("summary")
@click.argument("paths", nargs=-1, required=True, metavar="STORE|RUNDIR...")
@click.option("--title", default="chaos verdicts", show_default=True, help="The heading.")
def summary(paths: tuple[str, ...], title: str) -> None:
    """Print a Markdown table of the verdicts of every run under the paths (worst first),
    e.g. `chaos ci summary store >> "$GITHUB_STEP_SUMMARY"`. Exits 0 (it reports; the
    policy step decides), 4 when a path does not exist."""
    from chaos.ci.summary import markdown, row, run_dirs

    click.echo(markdown([row(d) for d in run_dirs(paths)], title=title), nl=False)
