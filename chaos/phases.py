"""The phases of one test, in order (Jepsen's `run!`); chaos.run.execute runs them.

Each phase is a function `phase(run, undo)`: it does one step and pushes on `undo` (an
ExitStack) whatever takes that step back, so leaving the test at any point (an error, Ctrl-C,
SIGTERM, the end) undoes exactly what was done, in reverse: the workload stops, the faults
heal, the monitor and recorder stop, the cluster hooks' teardown runs, the nodes' logs are
collected and the nodes killed, the net layer removes its proxies and rules, the runtime
removes what it made.

What a node is told comes from the runtime (addresses, ports, data dir, code root,
interpreter) and the net layer (how it dials each peer): `node_config` below is the one place
a NodeConfig is filled in.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.errors import SetupError
from chaos.target import (MAIN, Addr, Cluster, Endpoints, NodeConfig, StatusError, Target,
                          check_status)

#: how long the cluster has to elect its first leader after the nodes started, unless the
#: target says otherwise (Target.startup_timeout)
LEADER_TIMEOUT = 30.0
#: seconds between two progress lines of the final ops (thousands after an hour of set load)
FINAL_PROGRESS_EVERY = 5.0
#: how long `before_final_reads` may take (a replica catching up after the last heal)
FINAL_READS_HOOK_TIMEOUT = 60.0


@dataclass
class RunState:
    """The state the phases share: the inputs, then what each phase made."""

    cfg: Any                     # chaos.run.RunConfig
    target: Target
    target_ref: str
    workload: Any
    run_dir: Path
    names: list[str]
    runtime: Any                 # chaos.runtime.base.Runtime
    progress: Any = None
    rng: random.Random = field(default_factory=random.Random)
    real: Endpoints | None = None
    net: Any = None              # chaos.net.base.NetSetup
    configs: dict[str, NodeConfig] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    recorder: Any = None
    monitor: Any = None
    nemesis: Any = None
    runner: Any = None
    #: a cluster hook that failed after the workload ran (before_final_reads,
    #: teardown_cluster): the checkers still run, the verdict is unknown with this reason
    hook_failures: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        if self.progress:
            self.progress.phase(line)

    def cluster(self) -> Cluster:
        """The view the cluster hooks get (real addresses, commands on the nodes' hosts)."""
        assert self.real is not None
        return Cluster(nodes=list(self.names), endpoints=self.real,
                       options=dict(self.cfg.target_options),
                       run=self.runtime.run, data_dir=self.runtime.data_dir)

    def start_node(self, node: str, service: str | None = None, rejoin: bool = False) -> None:
        """First start, and restarts after a kill (NodeConfig.restart=True) or a wipe
        (rejoin=True): the node's services in order, or only the named one. Also the
        nemesis' restart callback. The scheduled fault kinds add their environment and
        files to every service (chaos.faults.node_setup: libfaketime for `clock`)."""
        from chaos.faults import node_setup
        from chaos.plugins import blame

        config = dataclasses.replace(self.configs[node], restart=node in self.started,
                                     rejoin=rejoin)
        with blame(self.target, "services"):
            services = list(self.target.services(config))
        env, files = node_setup([s.kind for s in self.cfg.schedule or []], config.data_dir,
                                first=node not in self.started)
        for svc in services:
            if service is None or svc.name == service:
                if env or files:
                    svc = dataclasses.replace(svc, env={**env, **svc.env},
                                              files={**files, **svc.files})
                self.runtime.start(node, svc)
        self.started.add(node)


def node_config(run: RunState, node: str, ports: dict[str, int]) -> NodeConfig:
    """Everything `node` is told (chaos.target.NodeConfig), from the runtime and the net."""
    rt, real, net = run.runtime, run.real, run.net
    assert real is not None
    return NodeConfig(
        name=node, listen=Addr(rt.listen_host(node), ports[MAIN]),
        peers={p: net.peer(node, p) for p in run.names if p != node},
        peer_ports=net.peer_ports(node), data_dir=rt.data_dir(node),
        options=dict(run.cfg.target_options), advertise=real[node], ports=dict(ports),
        advertise_ports=dict(real.ports[node]), nodes=tuple(run.names),
        code_root=rt.code_root(node), python=rt.python(node))


# -- the phases, in order ------------------------------------------------------------------

def runtime_setup(run: RunState, undo: contextlib.ExitStack) -> None:
    """Hosts or containers for every node; the target's binaries checked on them."""
    undo.callback(run.runtime.teardown)  # first in, last out; safe before setup too
    run.say(f"runtime {run.runtime.name}: {len(run.names)} nodes")
    run.runtime.setup(run.names, str(run.run_dir))
    from chaos.faults import host_files_of
    from chaos.schedule import kinds_of

    kinds = kinds_of([s.kind for s in run.cfg.schedule or []])
    run.runtime.check_binaries({**run.target.binaries, **host_files_of(kinds)})


def net_setup(run: RunState, undo: contextlib.ExitStack) -> None:
    """Each node's named ports, and the net layer between them (proxies, nat/DROP rules)."""
    from chaos import run as chaos_run

    rt = run.runtime
    ports = {n: rt.node_ports(n, run.target.ports) for n in run.names}
    run.real = Endpoints({n: {name: Addr(rt.host(n), port) for name, port in ports[n].items()}
                          for n in run.names})
    run.net = chaos_run._setup_net(run.cfg, rt, run.real)
    undo.callback(run.net.close)  # proxies deleted, nat/DROP rules removed
    run.configs = {n: node_config(run, n, ports[n]) for n in run.names}


def start_nodes(run: RunState, undo: contextlib.ExitStack) -> None:
    """Every node's services, in order, each ready before the next starts."""
    run.say("starting nodes")
    undo.callback(_stop_nodes, run)
    _check_scheduled_services(run)
    for node in run.names:
        run.start_node(node)


def _check_scheduled_services(run: RunState) -> None:
    """A one-service fault (`--nemesis kill:agent`) must name a service the nodes have:
    checked before the first node starts (services() first needs a NodeConfig)."""
    from chaos.errors import BadInput
    from chaos.plugins import blame

    wanted = {s.params["service"] for s in run.cfg.schedule or [] if s.params.get("service")}
    if not wanted:
        return
    have: set[str] = set()
    with blame(run.target, "services"):
        for node in run.names:
            have |= {svc.name for svc in run.target.services(run.configs[node])}
    for name in sorted(wanted - have):
        raise BadInput(f"--nemesis ...:{name}: target {run.target.name} has no service "
                       f"{name!r} (its services: {', '.join(sorted(have))})")


def _stop_nodes(run: RunState) -> None:
    """Collect each node's files (its outputs and logs), then kill it."""
    for node in run.names:
        with contextlib.suppress(Exception):
            run.runtime.collect_logs(node, str(run.run_dir / "nodes" / node))
        with contextlib.suppress(Exception):
            run.runtime.kill(node)


def wait_for_leader(run: RunState, undo: contextlib.ExitStack) -> None:
    """Until one node says it leads; the first answers are held to the status contract."""
    assert run.real is not None
    limit = float(getattr(run.target, "startup_timeout", LEADER_TIMEOUT))
    deadline = time.monotonic() + limit
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        for node in run.names:
            try:
                raw = run.target.status(node, run.real, 0.5)
            except Exception as exc:  # noqa: BLE001 - not answering yet
                last[node] = f"status raised {type(exc).__name__}: {exc}"[:300]
                if not _still_running(run, node):
                    raise SetupError(f"node {node} exited during start-up; see its output in "
                                     f"{run.run_dir / 'nodes' / node} (collected there at "
                                     f"teardown)") from None
                continue
            try:
                status = check_status(node, raw)
            except StatusError as exc:
                raise SetupError(f"target {run.target.name}: {exc}") from None
            last[node] = str(status)[:200]
            if status["role"] == "leader":
                return
        time.sleep(0.1)
    detail = "; ".join(f"{n}: {s}" for n, s in last.items())
    raise SetupError(f"no leader within {limit:g} s of start (the target's startup_timeout; "
                     f"{detail})")


def _still_running(run: RunState, node: str) -> bool:
    """Whether a node that did not answer its status is still running, asked twice (a node
    is declared dead at start-up only on two answers that say so, never on one the runtime
    could not give: a loaded host made a live node look dead once)."""
    for attempt in range(2):
        try:
            if run.runtime.is_running(node):
                return True
        except SetupError:
            return True  # cannot tell: the leader wait's own timeout decides
        if attempt == 0:
            time.sleep(0.2)
    return False


def setup_cluster(run: RunState, undo: contextlib.ExitStack) -> None:
    """The target's cluster hook (e.g. create a database); its teardown is pushed first, so
    a half-done setup is torn down too."""
    from chaos.plugins import blame

    undo.callback(_teardown_cluster, run)
    run.say("setup_cluster")
    with blame(run.target, "setup_cluster"):
        run.target.setup_cluster(run.cluster())


def _teardown_cluster(run: RunState) -> None:
    """The target's teardown hook; a failure is printed and recorded (the verdict becomes
    unknown: the hook may have left the cluster, or its evidence, in a state nobody checked)
    but never hides the checkers' result."""
    try:
        run.target.teardown_cluster(run.cluster())
    except Exception as exc:  # noqa: BLE001 - best effort: never hides the verdict
        problem = f"target {run.target.name}: teardown_cluster raised {type(exc).__name__}: {exc}"
        print(f"chaos: {problem}", file=sys.stderr)
        run.hook_failures.append(problem)


def record(run: RunState, undo: contextlib.ExitStack) -> None:
    """The recorder (history.jsonl as ops happen), the monitor and the nemesis."""
    from chaos.history.writer import HistoryWriter
    from chaos.monitor import Monitor
    from chaos.nemesis import Nemesis, NemesisContext
    from chaos.recorder import Recorder

    assert run.real is not None
    run.recorder = Recorder(HistoryWriter(run.run_dir / "history.jsonl"), time.monotonic_ns())
    undo.callback(run.recorder.close)
    run.monitor = Monitor(run.target, run.real, run.recorder.local("monitor"))
    run.monitor.start()
    undo.callback(run.monitor.stop)
    run.nemesis = Nemesis(NemesisContext(
        runtime=run.runtime, net=run.net.faults, nodes=run.names, leader=run.monitor.leader,
        past_leaders=run.monitor.past_leaders,
        restart=run.start_node, evidence=run.net.evidence, rng=run.rng,
        record=run.recorder.local("nemesis").record, status=lambda n: _status(run, n),
        membership=run.target.membership, cluster=run.cluster))
    undo.callback(lambda: run.nemesis.heal_all(record=False))


def _status(run: RunState, node: str) -> dict[str, Any]:
    """A node's status for the faults that verify through the target (out of band)."""
    assert run.real is not None
    return check_status(node, run.target.status(node, run.real, 1.0))


def start_workload(run: RunState, undo: contextlib.ExitStack) -> None:
    """The clients, through the net layer's client->node links."""
    from chaos.workload import WorkloadRunner

    cfg = run.cfg
    _probe_client(run)
    run.runner = WorkloadRunner(
        run.target, run.net.client_endpoints(), cfg.target_options, run.workload,
        run.recorder, concurrency=cfg.concurrency, rate=cfg.rate, seed=cfg.seed,
        op_timeout=cfg.op_timeout, target_ref=run.target_ref,
        placed=([run.net.client_endpoints(n) for n in run.names]
                if cfg.client_placement == "node" else None))
    run.runner.start()
    undo.callback(lambda: run.runner.stop(timeout=cfg.op_timeout + 2))


def _probe_client(run: RunState) -> None:
    """Build (and close) one client here first: a client() that raises on a healthy
    cluster is the target's bug, one setup error naming it, not worker processes retrying
    it for the whole run."""
    from chaos.plugins import blame

    with blame(run.target, "client"):
        client = run.target.client(run.net.client_endpoints(), run.cfg.target_options)
    with contextlib.suppress(Exception):
        client.close()


def run_schedule(run: RunState, undo: contextlib.ExitStack) -> None:
    """The fault schedule on this (main) thread until the time limit; the liveness watcher
    ends it early when the whole cluster is gone (chaos.liveness)."""
    from chaos.liveness import ClusterDown, Liveness
    from chaos.nemesis import wait_until
    from chaos.schedule import events

    start = time.monotonic()
    live = Liveness(run.runtime, run.names, run.monitor, run.nemesis, run.recorder)
    run.say(f"load from t={run.recorder.now() / 1e9:.1f}s for {run.cfg.time_limit:g} s (t: "
            "seconds since the history began, the origin of the verdict's times; the "
            "schedule's fault offsets count from the load's start)")

    def tick() -> None:
        live.tick()  # raises ClusterDown (recorded in the history): every node is gone
        if run.progress:
            run.progress.update(time.monotonic() - start, run.recorder, run.nemesis)

    try:
        for offset, what, spec in events(run.cfg.schedule or []):
            wait_until(start + offset, tick)
            (run.nemesis.start if what == "start" else run.nemesis.stop)(spec)
        wait_until(start + run.cfg.time_limit, tick)
    except ClusterDown:  # the load phase ends early; the verdict will say why
        run.say("the cluster is down: load phase ended early")


def heal(run: RunState, undo: contextlib.ExitStack) -> None:
    """Every fault healed (recorded), then the clients stopped."""
    run.nemesis.heal_all()
    run.runner.stop(timeout=run.cfg.op_timeout + 2)


def before_final_reads(run: RunState, undo: contextlib.ExitStack) -> None:
    """Quiescence, then the target's hook (e.g. replicas catch up); only when the workload
    takes final reads."""
    if not run.workload.takes_final_ops:
        return
    run.say("quiescence and final reads")
    if run.cfg.quiesce > 0:
        time.sleep(run.cfg.quiesce)
    try:
        run.target.before_final_reads(run.cluster(), FINAL_READS_HOOK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the workload ran: keep its history and check it
        problem = (f"target {run.target.name}: before_final_reads raised "
                   f"{type(exc).__name__}: {exc}; the final reads may not show every write")
        print(f"chaos: {problem}", file=sys.stderr)
        run.hook_failures.append(problem)


def final_reads(run: RunState, undo: contextlib.ExitStack) -> None:
    """The workload's final ops (routed by op["node"]; one per key per node for the set
    workload), then the monitor stops. Their count is said every few seconds."""
    last = [time.monotonic()]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= FINAL_PROGRESS_EVERY:
            last[0] = now
            run.say(f"final ops: {done} of {total} done")

    run.runner.run_final(run.names, 0, progress=progress, keep_values=False)
    run.monitor.stop()


#: Jepsen's run!, in order; teardown is the reverse of whatever ran
PHASES = (runtime_setup, net_setup, start_nodes, wait_for_leader, setup_cluster, record,
          start_workload, run_schedule, heal, before_final_reads, final_reads)


def phases_for(target: Target) -> tuple[Any, ...]:
    """PHASES in the order `target` needs: a target with `setup_before_leader` (a system
    that has no leader until a hook elects or initiates one) gets setup_cluster right after
    its nodes are ready, then the leader wait."""
    if not getattr(target, "setup_before_leader", False):
        return PHASES
    i, j = PHASES.index(wait_for_leader), PHASES.index(setup_cluster)
    order = list(PHASES)
    order[i], order[j] = order[j], order[i]
    return tuple(order)
