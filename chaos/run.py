"""`chaos run`: one whole test, from an empty store directory to a verdict.

Lifecycle (`prepare`, then `execute`, whose phases are chaos.phases.PHASES, in the order
chaos.phases.phases_for gives the target):

 1. validate everything the user gave (target, options, workload, nemeses, numbers) before
    anything starts: bad input exits 4 with nothing left behind;
 2. create store/<test>/<timestamp>/ and write config.json (seed, options, the exact fault
    schedule, versions), so a crash mid-run still leaves a replayable record;
 3. the phases, each undone in reverse on exit, error, Ctrl-C or SIGTERM: runtime setup,
    net setup, nodes start (services in order, each ready), first leader (statuses checked
    against the contract), the target's setup_cluster hook, recorder + monitor + nemesis,
    workload, the fault schedule on this (main) thread, heal, the before_final_reads hook,
    final reads; then teardown_cluster, node logs collected, nodes, net and runtime removed;
 4. check the history, write results.json and report.html, print the verdict.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from chaos import bounds, plugins, store
from chaos.archive import index
from chaos.errors import BadInput, ExitCode, verdict_exit_code
from chaos.schedule import SHAPES, FaultSpec, make_schedule
from chaos.target import Endpoints, Target

from chaos.plugins import RUNTIMES  # noqa: E402 - local, docker, ssh
from chaos.net.base import NET_CHOICES as NETS  # noqa: E402 - auto, proxy, transparent, iptables, none
#: --client-placement: "any" (every client reaches every node, as before) or "node" (each
#: logical client is bound to one node's side of a partition, as in Jepsen)
CLIENT_PLACEMENTS = ("any", "node")


@dataclass
class RunConfig:
    """Everything that defines a test; stored in config.json and enough to replay it."""

    target: str = "kvlite"
    target_options: dict[str, Any] = field(default_factory=dict)
    workload: str = "register"
    #: -W KEY=VALUE: the workload's own options (workloads.get validates them)
    workload_options: dict[str, Any] = field(default_factory=dict)
    #: None: the target's default_runtime (filled in by `prepare`)
    runtime: str | None = None
    nodes: int = 3
    nemesis: list[str] = field(default_factory=lambda: ["partition"])
    nemesis_interval: float = 5.0
    partition_shape: str = "isolate-leader"
    #: "refuse" (connections closed, connects refused) or "drop" (bytes silently dropped, as
    #: a real network partition: peers notice only by their own timeouts)
    partition_mode: str = "refuse"
    latency_ms: int = 200
    jitter_ms: int = 50
    #: the clock fault's mode (chaos.faults.clock.parse_spec): mixed, offset[:S], bump[:S],
    #: strobe[:S[:MS]], rate[:R]
    clock: str = "mixed"
    time_limit: float = 30.0
    concurrency: int = 6
    rate: float | None = 200.0
    seed: int = 0
    store: str = "store"
    quiesce: float = 3.0
    op_timeout: float = 1.0
    test_name: str | None = None
    schedule: list[FaultSpec] | None = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    net: str = "auto"
    client_placement: str = "any"

    def validate(self) -> None:
        """Raise BadInput naming the option for anything impossible (numbers: chaos.bounds)."""
        bounds.check_config(self)  # types and ranges first: the checks below compare values
        if self.runtime not in RUNTIMES:
            raise BadInput(f"--runtime: unknown runtime {self.runtime!r}; choose from "
                           f"{', '.join(RUNTIMES)}")
        if self.net not in NETS:
            raise BadInput(f"--net: unknown backend {self.net!r}; choose from {', '.join(NETS)}")
        if self.client_placement not in CLIENT_PLACEMENTS:
            raise BadInput(f"--client-placement: {self.client_placement!r}; choose from "
                           f"{', '.join(CLIENT_PLACEMENTS)}")
        if self.partition_shape not in SHAPES + ("mixed",):
            raise BadInput(f"--partition-shape must be one of {', '.join(SHAPES)}, mixed")
        if self.partition_mode not in ("refuse", "drop"):
            raise BadInput(f"--partition-mode: {self.partition_mode!r}; choose from refuse, drop")
        from chaos.faults.clock import parse_spec

        parse_spec(self.clock)
        store.check_store(self.store)

    @property
    def name(self) -> str:
        if self.test_name:
            return self.test_name
        base = os.path.basename(self.target).removesuffix(".py")
        faults = "+".join(k.replace(":", "-") for k in self.nemesis) or "none"
        return f"{base}-{self.workload}-{faults}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schedule"] = [s.to_dict() for s in (self.schedule or [])]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        known = {f for f in cls.__dataclass_fields__}
        cfg = cls(**{k: v for k, v in d.items() if k in known and k != "schedule"})
        cfg.schedule = [FaultSpec.from_dict(s) for s in d.get("schedule") or []]
        return cfg


@dataclass
class RunOutcome:
    run_dir: Path
    valid: Any
    exit_code: ExitCode
    results: dict[str, Any] | None
    interrupted: bool = False
    unverified: list[str] = field(default_factory=list)
    history: Any = None  # the checked History, for the summary (not serialised)


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup runs as for Ctrl-C."""


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while cleaning up: a second Ctrl-C must not leave faults behind."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def prepare(cfg: RunConfig, raw_options: list[str] | tuple[str, ...] = ()
            ) -> tuple[Target, str, Any]:
    """Validate the config and load target and workload; nothing is started yet."""
    ref = plugins.resolve_ref(cfg.target)
    target = plugins.load_target(ref)
    if cfg.runtime is None:
        cfg.runtime = target.default_runtime
    cfg.validate()
    if raw_options or not cfg.target_options:
        cfg.target_options = plugins.parse_target_options(target, list(raw_options))
    import workloads

    workload = workloads.get(cfg.workload, {**cfg.workload_options, "seed": cfg.seed})
    if cfg.workload not in target.workloads:  # every member exists (plugins.with_defaults)
        raise BadInput(f"--workload {cfg.workload}: target {target.name} supports "
                       f"{', '.join(sorted(target.workloads)) or 'no workload'}")
    from chaos.target import optional_faults

    if cfg.schedule is None:
        cfg.schedule = make_schedule(cfg.nemesis, interval=cfg.nemesis_interval,
                                     time_limit=cfg.time_limit, seed=cfg.seed,
                                     shape=cfg.partition_shape, latency_ms=cfg.latency_ms,
                                     jitter_ms=cfg.jitter_ms, partition_mode=cfg.partition_mode,
                                     clock=cfg.clock, optional=optional_faults(target))
    from chaos.faults import refused
    from chaos.schedule import kinds_of

    # a fault the target cannot take (clock on a Go binary, member where a wiped node
    # cannot rejoin) is bad input before anything starts
    refused(kinds_of(list(cfg.nemesis) + [s.kind for s in cfg.schedule]), target.name,
            optional_faults(target))
    cfg.net = _choose_net(cfg, target)
    if cfg.runtime == "ssh":
        from chaos.runtime.ssh import read_nodes_file

        ro = cfg.runtime_options
        if not ro.get("nodes_file") or not ro.get("key_path"):
            raise BadInput("--runtime ssh needs --nodes-file and --ssh-key")
        ro["hosts"] = read_nodes_file(ro["nodes_file"])  # read once; recorded in config.json
        cfg.nodes = len(ro["hosts"])
    # options that depend on the cluster size (e.g. a Sentinel quorum larger than the cluster)
    with plugins.blame(target, "check_cluster", BadInput):
        target.check_cluster(cfg.target_options, tuple(_node_names(cfg)))
    return target, ref, workload


def _net_needs(cfg: RunConfig) -> frozenset[str]:
    """The net capabilities the schedule and the client placement need."""
    from chaos.faults import needs_of

    needs = set(needs_of([s.kind for s in cfg.schedule or []]))
    if cfg.client_placement == "node" and needs:
        needs.add("client-placement")
    return frozenset(needs)


def _choose_net(cfg: RunConfig, target: Target) -> str:
    """--net auto -> the best backend the target and runtime allow (chaos.net.base)."""
    from chaos.net.base import choose_backend

    return choose_backend(cfg.net, target, cfg.runtime, _net_needs(cfg))


def _make_runtime(cfg: RunConfig, target: Target, progress: Any = None) -> Any:
    if cfg.runtime == "local":
        from chaos.runtime.local import LocalRuntime

        return LocalRuntime()
    if cfg.runtime == "docker":
        from chaos.runtime.docker import DockerRuntime

        say = (lambda line: progress.phase(line)) if progress else None
        from chaos.net.base import BACKENDS

        admin = BACKENDS[cfg.net].needs_net_admin and bool(_net_needs(cfg))
        return DockerRuntime(target=target, net_admin=admin, progress=say)
    from chaos.runtime.ssh import SshRuntime

    ro = cfg.runtime_options
    return SshRuntime(ro["hosts"], user=ro.get("user") or "root", key_path=ro["key_path"])


def _node_names(cfg: RunConfig) -> list[str]:
    if cfg.runtime == "ssh":
        return list(cfg.runtime_options["hosts"])  # the names the nodes file gives
    return [f"n{i}" for i in range(1, cfg.nodes + 1)]


def execute(cfg: RunConfig, target: Target, target_ref: str, workload: Any,
            progress: Any = None) -> RunOutcome:
    """Run the test described by a prepared config (see `prepare`). Returns the outcome.

    The phases are chaos.phases.PHASES, in order: runtime setup, net setup, nodes start,
    first leader, cluster setup hook, recorder+monitor+nemesis, workload, fault schedule,
    heal, before-final-reads hook, final reads. Each pushes its undo; leaving (the end, an
    error, Ctrl-C, SIGTERM) unwinds them in reverse with the signals shielded.
    """
    from chaos import phases

    run_dir = store.new_run_dir(cfg.store, cfg.name)
    config = {"config": cfg.to_dict(), "target_ref": target_ref, "versions": store.versions(),
              "argv": sys.argv}
    store.write_json(run_dir / "config.json", config)
    run = phases.RunState(cfg, target, target_ref, workload, run_dir, _node_names(cfg),
                          _make_runtime(cfg, target, progress), progress,
                          rng=random.Random(cfg.seed))
    interrupted = False
    with _signals(), contextlib.ExitStack() as undo:
        try:
            for phase in phases.phases_for(target):
                phase(run, undo)
        except (KeyboardInterrupt, _Terminated):
            interrupted = True
            run.say("interrupted: healing faults and stopping nodes")
        finally:
            with _shielded():
                if progress:
                    progress.close()
                if run.nemesis is not None and interrupted:
                    with contextlib.suppress(Exception):
                        run.nemesis.heal_all()
                undo.close()

    unverified = list(run.nemesis.unverified) if run.nemesis else []
    if run.recorder is not None:
        # A worker that died without handing over its last ops may have lost an invoke: the
        # history is incomplete, so the verdict cannot be "valid".
        unverified += [f"client worker {s} ended without delivering all its ops"
                       for s in run.recorder.stats().lost_sources]
    if interrupted:
        index.record_run(run_dir)  # the archive lists it, as unknown (no results)
        return RunOutcome(run_dir, "unknown", ExitCode.UNKNOWN, None, interrupted=True,
                          unverified=unverified)
    results, history = check_run(run_dir, workload, unverified, config,
                                 problems=run.hook_failures)
    index.record_run(run_dir)  # store/index.jsonl: what `chaos serve` lists
    return RunOutcome(run_dir, results["valid"], verdict_exit_code(results["valid"]), results,
                      unverified=unverified, history=history)


def check_run(run_dir: Path, workload: Any, unverified: list[str],
              config: dict[str, Any] | None = None,
              problems: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], Any]:
    """Check a finished run's history; write results.json (chaos.report.results'
    results_document) and report.html; return the document and the history (a History, or
    the Digest of a history checked in shards).

    The check is `chaos analyze`'s: in shards by key (chaos.checkers.sharded, memory bounded
    whatever the run's length), in memory only for what that path doubts. The report reads
    a history of up to chaos.report.sample.SAMPLE_ABOVE lines whole, a longer one in one
    bounded pass that samples what it shows, so it is always written.
    `problems` (a cluster hook that failed after the workload ran) lead the reasons: the
    checkers still judge the complete history, but the verdict is at best unknown."""
    from chaos.checkers import run_checkers, select_checkers
    from chaos.checkers.sharded import analyze_path
    from chaos.history.reader import read_history
    from chaos.history.stream import Doubt
    from chaos.report.results import results_document

    path = run_dir / "history.jsonl"
    names = list(dict.fromkeys(list(getattr(workload, "checkers", [])) + ["dual-leaders"]))
    expects_finals = False
    with contextlib.suppress(Exception):  # does the workload take final reads? (evidence)
        expects_finals = bool(workload.takes_final_ops)
    opts = {"out_dir": str(run_dir), "final_reads_expected": expects_finals}
    history: Any = None
    try:
        outcome, history = analyze_path(path, names, opts)
    except Doubt:
        history = read_history(path)
        outcome = run_checkers(history, select_checkers(history, names), opts)
    if problems:
        outcome = {**outcome, "reasons": list(problems) + list(outcome.get("reasons") or [])}
    results = results_document(outcome, history=history, path=str(path),
                               fmt="jsonl", run_dir=str(run_dir), unverified=unverified)
    store.write_json(run_dir / "results.json", results)
    lines = getattr(history, "lines", None)  # a Digest: the history was checked in shards
    with contextlib.suppress(ImportError):
        from chaos.report import render, render_file

        if lines is None:
            render(history, results, run_dir / "report.html", config=config)
        else:
            render_file(path, results, run_dir / "report.html", config=config, lines=lines)
    return results, history


def _setup_net(cfg: RunConfig, runtime: Any, real: Endpoints) -> Any:
    """The network layer (chaos.net.base.NetSetup) of the backend `prepare` chose.

    No network fault in the schedule: direct addresses, nothing in between. Else the
    explicit Toxiproxy mesh (`proxy`: the embedded server locally, or in its own container
    with --runtime docker; a real Toxiproxy when TOXIPROXY_URL answers), the `transparent`
    mesh (the same proxies behind nat rules in the nodes), or `iptables` DROP rules.
    """
    from chaos.faults import FAULTS
    from chaos.net.setup import build_net

    needs_net = any(FAULTS[s.kind].needs for s in cfg.schedule or [])
    placements = list(real) if cfg.client_placement == "node" else []
    tag = re.sub(r"[^A-Za-z0-9_.:-]", "_", getattr(runtime, "test_id", None) or cfg.name)[:80]
    return build_net(cfg.net, runtime, real, needs_net=needs_net, placements=placements,
                     tag=tag)
