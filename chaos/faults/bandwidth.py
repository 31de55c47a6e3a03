"""bandwidth: limit each direction of every node link to rate_kb KB/s (param rate_kb).

Not part of `--nemesis all` (a slow link is a different experiment from a cut one); ask
for it by name.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Outcome, register
from chaos.faults.partition import NetFault

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis


class Bandwidth(NetFault):
    kind = "bandwidth"
    start_op, stop_op = "start-bandwidth", "stop-bandwidth"
    needs = frozenset({"bandwidth"})
    in_all = False

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        return {"rate_kb": opts.get("bandwidth_kb", 100)}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        net = nem.net()
        rate = int(params.get("rate_kb", 100))
        did = net.bandwidth(None, rate)
        nem.net_faulty = True
        nem.current = f"bandwidth {rate} KB/s on node links"
        nem.evidence_begin("bandwidth", [tuple(l) for l in did.get("links", [])])
        return {"did": did}, net.verify()


register(Bandwidth())
