"""partition: cut the links between the groups of a shape (chaos.faults.shapes).

Params: shape (a SHAPES name; isolate-leader falls back to isolate-one, saying so, when no
leader is known), mode ("refuse", the default, or "drop"), one_way ([src, dst]: instead of a
shape, drop only the bytes src sends to dst). Verified by the backend's `verify()`; the
links it cut are handed to the fault-effect evidence (did they carry the target's traffic?).
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Fault, Outcome, register
from chaos.faults.shapes import SHAPES

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis


class NetFault(Fault):
    """Base of faults on the network backend: stop and heal are one net heal."""

    heal_key = "net"
    heal_order = 90

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        net = nem.net()
        did = net.heal()
        nem.net_faulty = False
        nem.evidence_end()
        return {"did": did}, net.verify()

    def heal(self, nem: Nemesis) -> Outcome:
        if nem.ctx.net is None:
            return {}, []
        did = nem.ctx.net.heal()
        nem.net_faulty = False
        nem.evidence_end()
        return {"net": did}, nem.ctx.net.verify()


class Partition(NetFault):
    kind = "partition"
    start_op, stop_op = "start-partition", "stop-partition"
    needs = frozenset({"partition"})

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        shape = opts.get("shape", "isolate-leader")
        params = {"shape": rng.choice(SHAPES) if shape == "mixed" else shape}
        if opts.get("partition_mode", "refuse") != "refuse":   # recorded only when not default
            params["mode"] = opts["partition_mode"]
        return params

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        net = nem.net()
        if params.get("one_way"):
            src, dst = params["one_way"]
            did = net.cut(src, dst)
            nem.net_faulty = True
            nem.current = f"one-way cut {src} -> {dst}"
            nem.evidence_begin("one-way cut", [(src, dst), (dst, src)])
            return {"did": did}, net.verify()
        shape, leader = params.get("shape", "isolate-leader"), nem.ctx.leader()
        why: dict[str, Any] = {}
        if shape == "isolate-leader" and leader is None:
            shape, why = "isolate-one", {"chosen": "random node (no leader known)"}
        if shape == "primaries":  # who led so far decides the sides: recorded
            why = {"leaders_seen": nem.ctx.past_leaders()}
        groups = nem.shape(shape, leader)
        did = net.partition(groups, params.get("mode", "refuse"))
        nem.net_faulty = True
        nem.current = f"partition {shape} " + " | ".join(" ".join(g) for g in groups)
        nem.evidence_begin(f"partition {shape}", [tuple(l) for l in did.get("cut", [])])
        return {"partition": groups, "did": did, **why}, net.verify()


register(Partition())
