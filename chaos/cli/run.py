"""`chaos run`: start a cluster, drive clients, inject faults, check the history.

Every input is checked before anything starts (RunConfig.validate: names, types and the
ranges of chaos.bounds; --store writable; a --replay config.json readable and whole): bad
input is one line naming the option or file, and exit 4.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click

from chaos import plugins
from chaos.bounds import BOUNDS, check_config, no_fault_warning
from chaos.errors import BadInput
from chaos.net.base import describe_backends
from chaos.schedule import ALL_COMBOS, KINDS, NAMES, SHAPES, parse_nemeses
from chaos.store import check_output_file

#: config.json keys a replay cannot do without (the rest have defaults)
REPLAY_KEYS = ("target", "workload", "nemesis", "seed", "schedule")


def _range(field: str) -> str:
    """The accepted range of a numeric option, for its help text (from chaos.bounds)."""
    return f"[{BOUNDS[field].describe()}]"


@click.command()
@click.option("--target", default="kvlite", show_default=True,
              help="Target name (see `chaos targets`) or path to a .py file.")
@click.option("-O", "options", multiple=True, metavar="KEY=VALUE",
              help="Target option, e.g. -O replication=async -O failover=naive "
                   "(`chaos targets` lists them).")
@click.option("--workload", default="register", show_default=True,
              help="register (read/write/cas: stale reads, linearizability) | set (add/read: "
                   "lost writes).")
@click.option("-W", "workload_options", multiple=True, metavar="KEY=VALUE",
              help="Workload option, e.g. -W adds_per_key=64 (set: adds_per_key, "
                   "read_fraction, key; register: keys, read, write, cas).")
@click.option("--runtime", default=None,
              help="Where nodes run: local (processes here) | docker (one container per node) "
                   "| ssh (hosts of --nodes-file). Default: the target's default_runtime "
                   "(local for kvlite).")
@click.option("--net", "net", default="auto", show_default=True,
              type=click.Choice(["auto", "proxy", "transparent", "iptables", "none"]),
              help="Network fault backend (auto: the best the target and runtime allow; "
                   "`chaos targets` says which apply per target). "
                   + " | ".join(describe_backends()))
@click.option("--client-placement", "client_placement", default="any", show_default=True,
              type=click.Choice(["any", "node"]),
              help="any: every client reaches every node; node: each client is bound to one "
                   "node's side of a partition (reaches only what that node reaches).")
@click.option("--nodes", default=3, show_default=True, type=int,
              help=f"Cluster size {_range('nodes')}; partition and latency need 2 or more.")
@click.option("--nemesis", default="partition", show_default=True,
              help=f"Fault kinds: {' | '.join(NAMES)}; a comma list, none, or all "
                   f"(= {','.join(KINDS)}, plus {', '.join(ALL_COMBOS)} where the target "
                   "takes them); a+b: together (partition+clock); kill:SERVICE / "
                   "pause:SERVICE act on that one service of a node (the target's service "
                   "names). clock and member need a target that takes them (docs/faults.md).")
@click.option("--nemesis-interval", default=5.0, show_default=True, type=float, metavar="S",
              help="Seconds of calm, then seconds of fault, repeated "
                   f"{_range('nemesis_interval')}; the first fault starts S s into the load "
                   "and ends at 2*S (the verdict's and progress line's t= count from the "
                   "history's start, a little earlier: the run prints it as 'load from t=').")
@click.option("--partition-shape", default="isolate-leader", show_default=True,
              type=click.Choice(list(SHAPES) + ["mixed"]),
              help="Who a partition cuts off (mixed: a random shape per fault).")
@click.option("--partition-mode", "partition_mode", default="refuse", show_default=True,
              type=click.Choice(["refuse", "drop"]),
              help="How a partition cuts a link: refuse (connections closed, connects "
                   "refused) or drop (bytes silently dropped, as a real network partition: "
                   "peers notice only by their own timeouts).")
@click.option("--clock", "clock", default="mixed", show_default=True, metavar="MODE",
              help="The clock fault (--nemesis clock): offset[:S] | bump[:S] | "
                   "strobe[:S[:MS]] | rate[:R] (x0.5 slow, x2 fast) | drift (x0.9 or x1.1) | "
                   "mixed (a mode drawn per fault; inside --nemesis all: drift). It skews the "
                   "leader's clocks (docs/faults.md).")
@click.option("--latency-ms", default=200, show_default=True, type=int, metavar="MS",
              help=f"Delay the latency fault adds to node-to-node links {_range('latency_ms')}.")
@click.option("--time-limit", default=30.0, show_default=True, type=float, metavar="S",
              help=f"Seconds of client load, faults included {_range('time_limit')}.")
@click.option("--concurrency", default=6, show_default=True, type=int,
              help=f"Logical client processes {_range('concurrency')}.")
@click.option("--rate", default=200.0, show_default=True, type=float,
              help=f"Total ops/s across clients, at most {BOUNDS['rate'].high:.0f}; "
                   "0 = as fast as possible.")
@click.option("--seed", default=None, type=int, help="Seed (default: random, recorded).")
@click.option("--store", "store_dir", default="store", show_default=True, type=click.Path(),
              help="Directory of run records: each run goes to STORE/<test>/<timestamp>/ "
                   "(created; must be a writable directory).")
@click.option("--quiesce", default=3.0, show_default=True, type=float, metavar="S",
              help=f"Seconds to let the cluster settle after the final heal {_range('quiesce')}.")
@click.option("--op-timeout", default=1.0, show_default=True, type=float, metavar="S",
              help=f"chaos's limit per client op {_range('op_timeout')}: an op unanswered after "
                   "S seconds is recorded as info (it may still happen) and its client process "
                   "replaced, whatever the target's client does. A target's own client timeout "
                   "(kvlite: -O timeout) only bounds how long that client waits for a reply, "
                   "so the shorter of the two ends an op.")
@click.option("--replay", type=click.Path(), default=None, metavar="RUNDIR",
              help="Re-run the config and fault schedule of a stored run directory "
                   "(other options are ignored, except --store, --json and --quiet).")
@click.option("--nodes-file", type=click.Path(), default=None,
              help="ssh runtime: hosts, one per line.")
@click.option("--ssh-user", default=None, help="ssh runtime: user.")
@click.option("--ssh-key", type=click.Path(), default=None, help="ssh runtime: private key.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results document as JSON on stdout (its JSON Schema: "
                   "chaos/report/results.schema.json, docs/ci.md).")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also write JUnit XML to FILE: a testcase per checker and one for the run "
                   "(unknown and infrastructure failures are errors, never passes).")
@click.option("--quiet", is_flag=True, help="No progress line.")
def run(target, options, workload, runtime, net, nodes, nemesis, nemesis_interval, partition_shape,
        latency_ms, time_limit, concurrency, rate, seed, store_dir, quiesce, op_timeout, replay,
        nodes_file, ssh_user, ssh_key, as_json, quiet, client_placement="any",
        partition_mode="refuse", clock="mixed", junit=None, workload_options=()):
    """Run a test and check it.

    Exit 0 valid, 1 anomalies, 2 unknown, 3 setup error, 4 bad input (nothing started).
    """
    from chaos.progress import Progress

    plan = plan_run(
        target=target, options=options, workload=workload, runtime=runtime, net=net,
        nodes=nodes, nemesis=nemesis, nemesis_interval=nemesis_interval,
        partition_shape=partition_shape, latency_ms=latency_ms, time_limit=time_limit,
        concurrency=concurrency, rate=rate, seed=seed, store_dir=store_dir, quiesce=quiesce,
        op_timeout=op_timeout, replay=replay, nodes_file=nodes_file, ssh_user=ssh_user,
        ssh_key=ssh_key, client_placement=client_placement, partition_mode=partition_mode,
        clock=clock, workload_options=workload_options)
    if junit is not None:
        check_output_file(junit, "--junit")
    cfg = plan.config
    # always shown, also with --quiet/--json: the run is not what was asked
    for warning in plan.warnings:
        click.echo(f"chaos: warning: {warning}", err=True)
    progress = Progress(cfg.time_limit, enabled=not quiet and not as_json)
    if not as_json and not quiet:
        chosen = " (--net auto)" if net == "auto" and not replay else ""
        click.echo(f"chaos run: {cfg.name}, {cfg.nodes} nodes ({cfg.runtime}, net {cfg.net}"
                   f"{chosen}), seed {cfg.seed}, {len(cfg.schedule or [])} faults over "
                   f"{cfg.time_limit:g} s", err=True)
    outcome, doc = execute_plan(plan, progress, junit)
    if as_json:
        from chaos.store import dumps_json

        click.echo(dumps_json(doc).decode())
    else:
        _print_verdict(outcome, plan.warnings)
    return int(outcome.exit_code)


@dataclass
class RunPlan:
    """A validated run, nothing started yet: what `plan_run` returns to `chaos run` and to
    chaos.api.run (both then call chaos.run.execute: one code path)."""

    config: Any          # chaos.run.RunConfig
    target: Any          # the loaded Target
    ref: str             # how the target was named (registry name or path)
    workload: Any
    warnings: list[str]  # start_warnings: what the user should know before it starts


def _pairs(flag: str, items: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict (BadInput naming the flag and the item otherwise)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{flag} {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def plan_run(*, target: str = "kvlite", options: Sequence[str] = (), workload: str = "register",
             runtime: str | None = None, net: str = "auto", nodes: int = 3,
             nemesis: str = "partition", nemesis_interval: float = 5.0,
             partition_shape: str = "isolate-leader", latency_ms: int = 200,
             time_limit: float = 30.0, concurrency: int = 6, rate: float = 200.0,
             seed: int | None = None, store_dir: str = "store", quiesce: float = 3.0,
             op_timeout: float = 1.0, replay: str | None = None, nodes_file: str | None = None,
             ssh_user: str | None = None, ssh_key: str | None = None,
             client_placement: str = "any", partition_mode: str = "refuse",
             clock: str = "mixed", workload_options: Sequence[str] = ()) -> RunPlan:
    """Check every input of a run (the `chaos run` options, same names) and load its target
    and workload; raise BadInput naming the option for anything wrong. Starts nothing."""
    import random

    from chaos import run as runmod

    if replay:
        cfg = load_replay(replay, store_dir)
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
            runtime_options=runtime_options, net=net, client_placement=client_placement,
            partition_mode=partition_mode, clock=clock,
            workload_options=_pairs("-W", workload_options))
        raw_options = list(options)
    tgt, ref, wl = runmod.prepare(cfg, raw_options)
    check_config(cfg)  # again: prepare() may have learnt the node count (ssh nodes file)
    if replay:  # stored options skip the -O parsing: hold them to the target's rules too
        try:
            with plugins.blame(tgt, "validate_options", BadInput):
                cfg.target_options = dict(tgt.validate_options(cfg.target_options))
        except BadInput as exc:
            raise BadInput(str(exc), where=str(Path(replay) / "config.json")) from None
    return RunPlan(cfg, tgt, ref, wl, start_warnings(cfg))


def execute_plan(plan: RunPlan, progress: Any, junit: str | Path | None
                 ) -> tuple[Any, dict[str, Any]]:
    """Run a planned test (chaos.run.execute) and write its --junit file; returns the
    RunOutcome and its results document (run_document). An infrastructure failure still
    writes the JUnit file, as an error (CI reads that file), then propagates."""
    from chaos import run as runmod
    from chaos.errors import ChaosError

    cfg = plan.config
    try:
        outcome = runmod.execute(cfg, plan.target, plan.ref, plan.workload, progress=progress)
    except ChaosError as exc:
        if junit is not None:
            write_run_junit(junit, cfg.name, None, error=exc)
        raise
    doc = run_document(outcome, plan.warnings)
    if junit is not None:
        write_run_junit(junit, cfg.name, doc)
    return outcome, doc


def run_document(outcome: Any, warnings: list[str]) -> dict[str, Any]:
    """The results document of a finished run (chaos.report.results: the one shape of
    results.json, `chaos run --json`, --junit and chaos.api), with the start warnings."""
    from chaos.report.results import results_document

    doc = outcome.results or results_document(
        None, run_dir=str(outcome.run_dir), interrupted=outcome.interrupted,
        unverified=outcome.unverified)
    return {**doc, "warnings": warnings + [w for w in doc["warnings"] if w not in warnings]}


def write_run_junit(path: str | Path, name: str, doc: dict[str, Any] | None,
                    error: Exception | None = None) -> None:
    """--junit of a run: its results, or (error) one "run" error case for a run that could
    not finish (exit 3: an infrastructure failure, which CI must not read as a pass)."""
    from chaos.report.junit import write_junit

    if doc is None:
        doc = {"valid": "unknown", "results": {},
               "reasons": [f"infrastructure error (exit {int(getattr(error, 'exit_code', 3))})"
                           f": {error}"]}
    write_junit(doc, path, suite_name=name)


def start_warnings(cfg: Any) -> list[str]:
    """What the user should know before a valid but surprising run starts (stderr, summary)."""
    out = [w for w in (no_fault_warning(cfg),) if w]
    client_timeout = (cfg.target_options or {}).get("timeout")
    if isinstance(client_timeout, (int, float)) and client_timeout > cfg.op_timeout:
        out.append(f"-O timeout={client_timeout:g} is longer than --op-timeout "
                   f"{cfg.op_timeout:g}: chaos ends every op after {cfg.op_timeout:g} s (info)")
    return out


def load_replay(replay: str, store_dir: str) -> Any:
    """The RunConfig stored in RUNDIR/config.json, with `store_dir` as its store.

    A missing, unreadable, malformed or incomplete file is BadInput naming the file (the
    config then goes through the same RunConfig.validate as CLI input).
    """
    from chaos import run as runmod
    from chaos import store
    from chaos.schedule import FaultSpec

    path = Path(replay) / "config.json"
    if not path.is_file():
        raise BadInput(f"--replay {replay}: no config.json there")
    where = str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON ({exc.msg} at line {exc.lineno})", where=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read ({exc})", where=where) from None
    if not isinstance(doc, dict):
        raise BadInput("not a JSON object: not a chaos run's config.json", where=where)
    stored = doc.get("config")
    if not isinstance(stored, dict):
        raise BadInput('no "config" object: not a chaos run\'s config.json', where=where)
    missing = [k for k in REPLAY_KEYS if k not in stored]
    if missing:
        raise BadInput(f"missing {', '.join(missing)} in \"config\": cannot replay", where=where)
    schedule = stored["schedule"]
    if not isinstance(schedule, list):
        raise BadInput(f"schedule must be a list of faults (got {type(schedule).__name__})",
                       where=where)
    for i, spec in enumerate(schedule):
        try:
            if not isinstance(spec, dict):
                raise TypeError(f"not an object: {spec!r:.60}")
            FaultSpec.from_dict(spec)
        except KeyError as exc:
            raise BadInput(f"schedule entry {i + 1}: missing {exc}", where=where) from None
        except (TypeError, ValueError) as exc:
            raise BadInput(f"schedule entry {i + 1}: {exc}", where=where) from None
    try:
        cfg = runmod.RunConfig.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"bad config: {exc}", where=where) from None
    cfg.store = store_dir
    store.check_store(store_dir)  # a bad --store is the user's argument, not the file's fault
    try:  # types and ranges here, to name the file; prepare() validates the rest
        check_config(cfg)
    except BadInput as exc:
        raise BadInput(str(exc), where=where) from None
    return cfg


def _print_verdict(outcome: Any, warnings: list[str]) -> None:
    """The human summary: where the run is stored, then each checker's verdict and anomalies."""
    click.echo(f"run directory: {outcome.run_dir}")
    if outcome.interrupted:
        click.echo("interrupted: faults healed, nodes stopped; the history so far is in "
                   f"{outcome.run_dir / 'history.jsonl'} (chaos analyze reads it)")
        return
    for problem in outcome.unverified:
        click.echo(f"UNVERIFIED FAULT: {problem}")
    from chaos.history.summary import format_summary

    results = dict(outcome.results)
    results["warnings"] = list(results.get("warnings") or []) + warnings
    click.echo(format_summary(str(outcome.run_dir), results, outcome.history))
    report = outcome.run_dir / "report.html"
    if report.exists():
        click.echo(f"report: {report}")


__all__ = ["run", "plan_run", "RunPlan", "execute_plan", "run_document", "load_replay",
           "start_warnings", "REPLAY_KEYS"]
