"""pause: SIGSTOP a node's processes (params node, service as for kill); the stop resumes.

Verified: the processes are stopped (state T) after the pause and not after the resume.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Fault, Outcome, register
from chaos.faults.kill import _what, on_service

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis


class Pause(Fault):
    kind = "pause"
    start_op, stop_op = "pause", "resume"
    heal_key = "pause"
    heal_order = 10
    per_service = True

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        return {"node": "leader"}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        node, why = nem.pick(params.get("node", "leader"))
        service = params.get("service")
        on_service(nem.ctx.runtime.pause, node, service)
        nem.paused.add(node)
        nem.paused_services[node] = service
        nem.current = f"paused {_what(node, service)} ({why})"
        stopped = on_service(nem.ctx.runtime.is_paused, node, service)
        problems = [] if stopped else [f"{_what(node, service)} not stopped after SIGSTOP"]
        out: dict[str, Any] = {"node": node, "chosen": why}
        if service is not None:
            out["service"] = service
        return out, problems

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        return self._resume(nem)

    def heal(self, nem: Nemesis) -> Outcome:
        did, problems = self._resume(nem)
        return ({"resumed": did["nodes"]} if did["nodes"] else {}), problems

    def _resume(self, nem: Nemesis) -> Outcome:
        nodes = sorted(nem.paused)
        problems = []
        for node in nodes:
            service = nem.paused_services.pop(node, None)
            on_service(nem.ctx.runtime.resume, node, service)
            nem.paused.discard(node)
            if on_service(nem.ctx.runtime.is_paused, node, service):
                problems.append(f"{_what(node, service)} still stopped after SIGCONT")
        return {"nodes": nodes}, problems


register(Pause())
