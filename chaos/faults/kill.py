"""kill: SIGKILL a node's processes (params node: "leader" | "random" | a name; service:
one named service, or None for every service of the node); the stop restarts what was killed.

Verified: after the kill the node (or service) is not running; after the restart it is.
A node killed here is in `Nemesis.killed` until restarted (the liveness watcher reads it).
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Fault, Outcome, register

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis


def on_service(method: Any, node: str, service: str | None) -> Any:
    """Call a runtime method for the whole node (service None) or one named service."""
    return method(node) if service is None else method(node, service)


def _what(node: str, service: str | None) -> str:
    return node if service is None else f"{node}/{service}"


class Kill(Fault):
    kind = "kill"
    start_op, stop_op = "kill", "restart"
    heal_key = "kill"
    heal_order = 20
    per_service = True

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        return {"node": "leader"}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        node, why = nem.pick(params.get("node", "leader"))
        service = params.get("service")
        on_service(nem.ctx.runtime.kill, node, service)
        nem.killed.add(node)
        nem.killed_services[node] = service
        nem.current = f"killed {_what(node, service)} ({why})"
        running = on_service(nem.ctx.runtime.is_running, node, service)
        problems = [f"{_what(node, service)} still running after SIGKILL"] if running else []
        out: dict[str, Any] = {"node": node, "chosen": why}
        if service is not None:
            out["service"] = service
        return out, problems

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        return self._restart(nem)

    def heal(self, nem: Nemesis) -> Outcome:
        did, problems = self._restart(nem)
        return ({"restarted": did["nodes"]} if did["nodes"] else {}), problems

    def _restart(self, nem: Nemesis) -> Outcome:
        nodes = sorted(nem.killed)
        problems = []
        for node in nodes:
            service = nem.killed_services.pop(node, None)
            on_service(nem.ctx.restart, node, service)
            nem.killed.discard(node)
            if not on_service(nem.ctx.runtime.is_running, node, service):
                problems.append(f"{_what(node, service)} not running after restart")
        return {"nodes": nodes}, problems


register(Kill())
