"""`chaos compare RUN_A RUN_B`: what changed between two runs (chaos.archive.compare)."""
from __future__ import annotations

import click

from chaos.store import dumps_json


@click.command()
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Compare two run directories: config, verdicts, anomaly counts per kind, perf.

    Exit 0 after printing; 4 when a RUN is not a run directory.
    """
    from chaos.archive.compare import compare_runs, format_comparison

    doc = compare_runs(run_a, run_b)
    click.echo(dumps_json(doc).decode() if as_json else format_comparison(doc))
