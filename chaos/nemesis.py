"""The nemesis: applies, verifies and undoes faults, recording each as history ops.

Every fault is a pair of nemesis ops: `start-partition`/`stop-partition`,
`start-latency`/`stop-latency`, `kill`/`restart`, `pause`/`resume`, and a final `heal`. Each op
is an invoke (what was asked) then a completion: `ok` with what was done and verified, or
`info` with an error when applying or verifying failed. An unverified fault makes the run's
verdict unknown (the run controller reads `unverified`): a fault we cannot prove happened must
never let a run pass as valid. Everything applied is tracked, so `heal_all()` undoes all of it
(also on Ctrl-C and on errors).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from chaos.runtime.base import Runtime
from chaos.schedule import FaultSpec


class NetFaults(Protocol):
    """What the nemesis needs from a network backend (chaos.net.mesh.Mesh, iptables)."""

    def shape(self, name: str, rng: random.Random, leader: str | None = None) -> list[list[str]]: ...
    def partition(self, groups: list[list[str]]) -> dict: ...
    def latency(self, links: Any, ms: int, jitter_ms: int = 0) -> dict: ...
    def heal(self) -> dict: ...
    def verify(self) -> list[str]: ...


@dataclass
class NemesisContext:
    runtime: Runtime
    net: NetFaults | None
    nodes: list[str]
    leader: Callable[[], str | None]          # the monitor's current view
    restart: Callable[[str], None]            # start a node again with its original config
    rng: random.Random
    record: Callable[[dict[str, Any]], Any]   # recorder source: record(op)


@dataclass
class Nemesis:
    ctx: NemesisContext
    killed: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    net_faulty: bool = False
    unverified: list[str] = field(default_factory=list)
    current: str | None = None   # human description of the active fault (progress line)

    # -- one recorded operation ------------------------------------------------------------
    def _op(self, f: str, value: dict[str, Any], action: Callable[[], tuple[dict, list[str]]]) -> dict:
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

    def _pick(self, which: str) -> tuple[str, str]:
        """Resolve "leader" / "random" / a node name to a node, with the reason."""
        if which in self.ctx.nodes:
            return which, "named"
        if which == "leader":
            leader = self.ctx.leader()
            if leader is not None:
                return leader, "leader"
        return self.ctx.rng.choice(self.ctx.nodes), "random (no leader known)" if which == "leader" else "random"

    # -- faults -----------------------------------------------------------------------------
    def start(self, spec: FaultSpec) -> dict:
        kind, p = spec.kind, spec.params
        if kind == "partition":
            def act() -> tuple[dict, list[str]]:
                assert self.ctx.net is not None
                shape, leader, why = p.get("shape", "isolate-leader"), self.ctx.leader(), {}
                if shape == "isolate-leader" and leader is None:
                    shape, why = "isolate-one", {"chosen": "random node (no leader known)"}
                groups = self.ctx.net.shape(shape, self.ctx.rng, leader=leader)
                did = self.ctx.net.partition(groups)
                self.net_faulty = True
                self.current = f"partition {shape} " + " | ".join(" ".join(g) for g in groups)
                return {"partition": groups, "did": did, **why}, self.ctx.net.verify()
            return self._op("start-partition", dict(p), act)
        if kind == "latency":
            def act() -> tuple[dict, list[str]]:
                assert self.ctx.net is not None
                did = self.ctx.net.latency(None, int(p.get("ms", 200)), int(p.get("jitter_ms", 0)))
                self.net_faulty = True
                self.current = f"latency {p.get('ms')}±{p.get('jitter_ms')} ms on node links"
                return {"did": did}, self.ctx.net.verify()
            return self._op("start-latency", dict(p), act)
        if kind == "kill":
            def act() -> tuple[dict, list[str]]:
                node, why = self._pick(p.get("node", "leader"))
                self.ctx.runtime.kill(node)
                self.killed.add(node)
                self.current = f"killed {node} ({why})"
                problems = [f"{node} still running after SIGKILL"] if self.ctx.runtime.is_running(node) else []
                return {"node": node, "chosen": why}, problems
            return self._op("kill", dict(p), act)
        if kind == "pause":
            def act() -> tuple[dict, list[str]]:
                node, why = self._pick(p.get("node", "leader"))
                self.ctx.runtime.pause(node)
                self.paused.add(node)
                self.current = f"paused {node} ({why})"
                problems = [] if self.ctx.runtime.is_paused(node) else [f"{node} not stopped after SIGSTOP"]
                return {"node": node, "chosen": why}, problems
            return self._op("pause", dict(p), act)
        raise ValueError(f"unknown fault kind {kind!r}")

    def stop(self, spec: FaultSpec) -> dict:
        kind = spec.kind
        self.current = None
        if kind in ("partition", "latency"):
            def act() -> tuple[dict, list[str]]:
                assert self.ctx.net is not None
                did = self.ctx.net.heal()
                self.net_faulty = False
                return {"did": did}, self.ctx.net.verify()
            return self._op(f"stop-{kind}", {}, act)
        if kind == "kill":
            def act() -> tuple[dict, list[str]]:
                nodes = sorted(self.killed)
                for node in nodes:
                    self.ctx.restart(node)
                    self.killed.discard(node)
                down = [n for n in nodes if not self.ctx.runtime.is_running(n)]
                return {"nodes": nodes}, [f"{n} not running after restart" for n in down]
            return self._op("restart", {}, act)
        if kind == "pause":
            def act() -> tuple[dict, list[str]]:
                nodes = sorted(self.paused)
                for node in nodes:
                    self.ctx.runtime.resume(node)
                    self.paused.discard(node)
                still = [n for n in nodes if self.ctx.runtime.is_paused(n)]
                return {"nodes": nodes}, [f"{n} still stopped after SIGCONT" for n in still]
            return self._op("resume", {}, act)
        raise ValueError(f"unknown fault kind {kind!r}")

    def heal_all(self, record: bool = True) -> None:
        """Undo every fault still applied. Safe to call repeatedly and after errors."""
        def act() -> tuple[dict, list[str]]:
            done: dict[str, Any] = {}
            for node in sorted(self.paused):
                self.ctx.runtime.resume(node)
            done["resumed"] = sorted(self.paused)
            self.paused.clear()
            for node in sorted(self.killed):
                self.ctx.restart(node)
            done["restarted"] = sorted(self.killed)
            self.killed.clear()
            if self.ctx.net is not None:
                done["net"] = self.ctx.net.heal()
                self.net_faulty = False
            self.current = None
            problems = self.ctx.net.verify() if self.ctx.net is not None else []
            return done, problems
        if record:
            self._op("heal", {}, act)
        else:
            act()


def wait_until(deadline: float, step: Callable[[], None] | None = None, tick: float = 0.1) -> None:
    """Sleep until time.monotonic() >= deadline, calling `step` (progress) every tick."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if step is not None:
            step()
        time.sleep(min(tick, left))
