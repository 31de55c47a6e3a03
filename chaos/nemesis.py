"""The nemesis: applies, verifies and undoes faults, recording each as history ops.

Each fault kind is one object in the registry chaos.faults (start / stop / heal and their
verification); this module is the facade the run controller drives. Every fault is a pair
of nemesis ops (`start-partition`/`stop-partition`, `start-latency`/`stop-latency`,
`kill`/`restart`, `pause`/`resume`, ...) and a final `heal`. Each op is an invoke (what was
asked) then a completion: `ok` with what was done and verified, or `info` with an error when
applying or verifying failed. An unverified fault makes the run's verdict unknown (the run
controller reads `unverified`): a fault we cannot prove happened must never let a run pass
as valid. The same holds for a network fault we cannot prove touched the target's traffic:
the final `heal` asks the fault-effect evidence (chaos.net.evidence) and adds its problems
to `unverified`. Everything applied is tracked, so `heal_all()` undoes all of it (also on
Ctrl-C and on errors).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.errors import SetupError
from chaos.faults import FAULTS, get
from chaos.faults.shapes import partition_shape
from chaos.net.base import NetFaults
from chaos.runtime.base import Runtime
from chaos.schedule import FaultSpec

__all__ = ["Nemesis", "NemesisContext", "NetFaults", "wait_until"]


@dataclass
class NemesisContext:
    runtime: Runtime
    net: NetFaults | None
    nodes: list[str]
    leader: Callable[[], str | None]          # the monitor's current view
    #: start a node again with its original config: restart(node), or restart(node, service)
    #: after a kill of one named service, or restart(node, rejoin=True) after its data was
    #: wiped (NodeConfig.rejoin: it comes back as a new member)
    restart: Callable[..., None]
    rng: random.Random
    record: Callable[[dict[str, Any]], Any]   # recorder source: record(op)
    #: the fault-effect evidence (chaos.net.evidence.Evidence), None: not collected
    evidence: Any = None
    #: every node seen leading, the most recent first (the "primaries" partition shape)
    past_leaders: Callable[[], list[str]] = list
    #: status(node) -> the node's status, checked against the contract (raises when it does
    #: not answer): faults that verify through the target (member's catch-up)
    status: Callable[[str], dict[str, Any]] | None = None
    #: the target's membership capability (chaos.target.Membership), None: it has none
    membership: Any = None
    #: cluster() -> the chaos.target.Cluster the membership calls get
    cluster: Callable[[], Any] | None = None


@dataclass
class Nemesis:
    ctx: NemesisContext
    killed: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    #: node -> the one service a kill/pause acted on (None: the whole node)
    killed_services: dict[str, str | None] = field(default_factory=dict)
    paused_services: dict[str, str | None] = field(default_factory=dict)
    #: nodes a membership fault removed from the configuration (stopped, data moved aside)
    removed: set[str] = field(default_factory=set)
    net_faulty: bool = False
    unverified: list[str] = field(default_factory=list)
    current: str | None = None   # human description of the active fault (progress line)
    #: what fault kinds without a field above keep between start, stop and heal (kind -> ...)
    state: dict[str, Any] = field(default_factory=dict)
    _evidence_checked: bool = False

    # -- helpers the faults use -------------------------------------------------------------
    def net(self) -> NetFaults:
        if self.ctx.net is None:
            raise SetupError("this fault needs a network backend, and the run has none (--net)")
        return self.ctx.net

    def shape(self, name: str, leader: str | None) -> list[list[str]]:
        """Groups of a partition shape over this run's nodes."""
        return partition_shape(list(self.ctx.nodes), name, self.ctx.rng, leader,
                               leaders=self.ctx.past_leaders())

    def pick(self, which: str, wait_s: float = 0.0) -> tuple[str, str]:
        """Resolve "leader" / "follower" / "random" / a node name to a node, with the reason.

        With no leader known (right after a kill or a pause none may be) "leader" and
        "follower" fall back to a random node; `wait_s` > 0 first polls the monitor that long
        for a leader (faults for which the leader is the wrong node to hit, e.g. a wipe)."""
        if which in self.ctx.nodes:
            return which, "named"
        leader = self.ctx.leader() if which in ("leader", "follower") else None
        deadline = time.monotonic() + wait_s
        while leader is None and which in ("leader", "follower") \
                and time.monotonic() < deadline:
            time.sleep(0.1)
            leader = self.ctx.leader()
        if which == "leader" and leader is not None:
            return leader, "leader"
        if which == "follower" and leader is not None:
            return self.ctx.rng.choice([n for n in self.ctx.nodes if n != leader]), "follower"
        why = "random" if which not in ("leader", "follower") else \
            f"random (no leader known{f' within {wait_s:g} s' if wait_s else ''})"
        return self.ctx.rng.choice(self.ctx.nodes), why

    def evidence_begin(self, what: str, links: list[tuple[str, str]]) -> None:
        if self.ctx.evidence is not None:
            self.ctx.evidence.begin(what, links)

    def evidence_end(self) -> None:
        if self.ctx.evidence is not None:
            self.ctx.evidence.end()

    # -- one recorded operation ------------------------------------------------------------
    def _op(self, f: str, value: dict[str, Any],
            action: Callable[[], tuple[dict, list[str]]]) -> dict:
        self.ctx.record({"process": "nemesis", "type": "invoke", "f": f, "value": value})
        try:
            result, problems = action()
        except Exception as exc:  # noqa: BLE001 - a failed fault is recorded, then reported
            msg = f"{f} failed: {type(exc).__name__}: {exc}"
            self.unverified.append(msg)
            self.ctx.record({"process": "nemesis", "type": "info", "f": f, "value": value,
                             "error": msg[:500]})
            return {"error": msg}
        if problems:
            msg = f"{f} not verified: {'; '.join(problems)[:400]}"
            self.unverified.append(msg)
            self.ctx.record({"process": "nemesis", "type": "info", "f": f,
                             "value": {**value, **result}, "error": msg})
        else:
            self.ctx.record({"process": "nemesis", "type": "ok", "f": f,
                             "value": {**value, **result, "verified": True}})
        return result

    # -- the facade -------------------------------------------------------------------------
    def start(self, spec: FaultSpec) -> dict:
        fault = get(spec.kind)
        return self._op(fault.start_op, dict(spec.params), lambda: fault.start(self, spec.params))

    def stop(self, spec: FaultSpec) -> dict:
        fault = get(spec.kind)
        self.current = None
        return self._op(fault.stop_op, {}, lambda: fault.stop(self, spec.params))

    def heal_all(self, record: bool = True) -> None:
        """Undo every fault still applied. Safe to call repeatedly and after errors.

        The recorded heal (the end of the run) also checks the fault-effect evidence once.
        """
        def act() -> tuple[dict, list[str]]:
            done: dict[str, Any] = {"resumed": sorted(self.paused),
                                    "restarted": sorted(self.killed)}
            problems: list[str] = []
            seen: set[str] = set()
            for fault in sorted(FAULTS.values(), key=lambda f: f.heal_order):
                if fault.heal_key and fault.heal_key in seen:
                    continue
                seen.add(fault.heal_key)
                did, found = fault.heal(self)
                done.update({k: v for k, v in did.items() if k not in ("resumed", "restarted")})
                problems += found
            self.current = None
            if self.ctx.evidence is not None:  # per fault: its links, their traffic meanwhile
                done["evidence"] = self.ctx.evidence.summary()
            return done, problems
        if record:
            self._op("heal", {}, act)
            self.check_evidence()
        else:
            act()

    def check_evidence(self) -> None:
        """Add the fault-effect evidence's problems to `unverified` (once per run)."""
        if self.ctx.evidence is None or self._evidence_checked:
            return
        self._evidence_checked = True
        try:
            problems = self.ctx.evidence.problems()
        except Exception as exc:  # noqa: BLE001 - no evidence is not evidence
            problems = [(f"fault-effect evidence could not be read ({type(exc).__name__}: "
                         f"{exc}): the network faults are not proven to have acted")]
        if not problems:
            return
        self.unverified += problems
        self.ctx.record({"process": "nemesis", "type": "invoke", "f": "fault-evidence",
                         "value": {}})
        self.ctx.record({"process": "nemesis", "type": "info", "f": "fault-evidence",
                         "value": {"problems": problems}, "error": "; ".join(problems)[:1000]})


def wait_until(deadline: float, step: Callable[[], None] | None = None, tick: float = 0.1) -> None:
    """Sleep until time.monotonic() >= deadline, calling `step` (progress) every tick."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if step is not None:
            step()
        time.sleep(min(tick, left))
