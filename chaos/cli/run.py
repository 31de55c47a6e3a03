"""`chaos run`: start a cluster, drive clients, inject faults, check the history."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaos.errors import BadInput
from chaos.schedule import SHAPES, parse_nemeses


@click.command()
@click.option("--target", default="kvlite", show_default=True,
              help="Target name (see `chaos targets`) or path to a .py file.")
@click.option("-O", "options", multiple=True, metavar="KEY=VALUE",
              help="Target option, e.g. -O replication=async -O failover=naive.")
@click.option("--workload", default="register", show_default=True, help="register | set")
@click.option("--runtime", default="local", show_default=True, help="local | docker | ssh")
@click.option("--net", "net", default="auto", show_default=True,
              help="Network fault backend: proxy (Toxiproxy mesh) | iptables | auto.")
@click.option("--nodes", default=3, show_default=True, type=int, help="Cluster size.")
@click.option("--nemesis", default="partition", show_default=True,
              help="partition|latency|kill|pause|all|none, or a comma list.")
@click.option("--nemesis-interval", default=5.0, show_default=True, type=float,
              help="Seconds of fault, then seconds of calm, repeated.")
@click.option("--partition-shape", default="isolate-leader", show_default=True,
              type=click.Choice(list(SHAPES) + ["mixed"]))
@click.option("--latency-ms", default=200, show_default=True, type=int)
@click.option("--time-limit", default=30.0, show_default=True, type=float,
              help="Seconds of client load (faults included).")
@click.option("--concurrency", default=6, show_default=True, type=int,
              help="Logical client processes.")
@click.option("--rate", default=200.0, show_default=True, type=float,
              help="Total ops/s across clients (0 = as fast as possible).")
@click.option("--seed", default=None, type=int, help="Seed (default: random, recorded).")
@click.option("--store", "store_dir", default="store", show_default=True, type=click.Path())
@click.option("--quiesce", default=3.0, show_default=True, type=float,
              help="Seconds to let the cluster settle after the final heal.")
@click.option("--op-timeout", default=1.0, show_default=True, type=float)
@click.option("--replay", type=click.Path(), default=None,
              help="Re-run the config and fault schedule of a stored run directory.")
@click.option("--nodes-file", type=click.Path(), default=None, help="ssh runtime: hosts, one per line.")
@click.option("--ssh-user", default=None, help="ssh runtime: user.")
@click.option("--ssh-key", type=click.Path(), default=None, help="ssh runtime: private key.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress line.")
def run(target, options, workload, runtime, net, nodes, nemesis, nemesis_interval, partition_shape,
        latency_ms, time_limit, concurrency, rate, seed, store_dir, quiesce, op_timeout, replay,
        nodes_file, ssh_user, ssh_key, as_json, quiet):
    """Run a test and check it. Exit 0 valid, 1 anomalies, 2 unknown, 3 setup error, 4 bad input."""
    import random

    from chaos import run as runmod
    from chaos.progress import Progress

    if replay:
        cfg_path = Path(replay) / "config.json"
        if not cfg_path.is_file():
            raise BadInput(f"--replay {replay}: no config.json there")
        stored = json.loads(cfg_path.read_text())
        cfg = runmod.RunConfig.from_dict(stored["config"])
        cfg.store = store_dir
        raw_options: list[str] = []
    else:
        runtime_options = {}
        if runtime == "ssh":
            runtime_options = {"nodes_file": nodes_file, "user": ssh_user, "key_path": ssh_key}
        cfg = runmod.RunConfig(
            target=target, workload=workload, runtime=runtime, nodes=nodes,
            nemesis=parse_nemeses(nemesis), nemesis_interval=nemesis_interval,
            partition_shape=partition_shape, latency_ms=latency_ms, time_limit=time_limit,
            concurrency=concurrency, rate=(rate or None), store=store_dir, quiesce=quiesce,
            op_timeout=op_timeout, seed=seed if seed is not None else random.randrange(2**31),
            runtime_options=runtime_options, net=net)
        raw_options = list(options)
    tgt, ref, wl = runmod.prepare(cfg, raw_options)
    progress = Progress(cfg.time_limit, enabled=not quiet and not as_json)
    if not as_json and not quiet:
        click.echo(f"chaos run: {cfg.name}, {cfg.nodes} nodes ({cfg.runtime}), seed {cfg.seed}, "
                   f"{len(cfg.schedule or [])} faults over {cfg.time_limit:.0f} s", err=True)
    outcome = runmod.execute(cfg, tgt, ref, wl, progress=progress)
    if as_json:
        from chaos.store import dumps_json

        click.echo(dumps_json({"run_dir": str(outcome.run_dir), "valid": outcome.valid,
                               "exit_code": int(outcome.exit_code),
                               "interrupted": outcome.interrupted,
                               "unverified_faults": outcome.unverified,
                               "results": outcome.results}).decode())
    else:
        _print_verdict(outcome)
    return int(outcome.exit_code)


def _print_verdict(outcome) -> None:
    """The human summary: where the run is stored, then each checker's verdict and anomalies."""
    click.echo(f"run directory: {outcome.run_dir}")
    if outcome.interrupted:
        click.echo("interrupted: faults healed, nodes stopped; the history so far is in "
                   f"{outcome.run_dir / 'history.jsonl'} (chaos analyze reads it)")
        return
    for problem in outcome.unverified:
        click.echo(f"UNVERIFIED FAULT: {problem}")
    from chaos.history.summary import format_summary

    click.echo(format_summary(str(outcome.run_dir), outcome.results, outcome.history))
    report = outcome.run_dir / "report.html"
    if report.exists():
        click.echo(f"report: {report}")
