"""latency: delay each direction of every node link by ms ± jitter_ms (params ms, jitter_ms).

A request/response round trip between two nodes gains about 2*ms. Verified by the
backend's `verify()`; the delayed links go to the fault-effect evidence.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Outcome, register
from chaos.faults.partition import NetFault

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis


class Latency(NetFault):
    kind = "latency"
    start_op, stop_op = "start-latency", "stop-latency"
    needs = frozenset({"latency"})

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        return {"ms": opts.get("latency_ms", 200), "jitter_ms": opts.get("jitter_ms", 50),
                "links": "nodes"}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        net = nem.net()
        ms, jitter = int(params.get("ms", 200)), int(params.get("jitter_ms", 0))
        did = net.latency(None, ms, jitter)
        nem.net_faulty = True
        nem.current = f"latency {ms}±{jitter} ms on node links"
        nem.evidence_begin("latency", [tuple(l) for l in did.get("links", [])])
        return {"did": did}, net.verify()


register(Latency())
