"""The set workload: add unique elements to one set, read it now and then, read it on every
node at the end.

Every element is added once (`process * 1_000_000 + n`), so an element missing from the final
reads names exactly one acknowledged add: a lost write. The final reads (one per node, each
routed there with "node" and marked "final": true) run after the last heal and a quiescence
period; replicas that still disagree then show up as divergent.

Options (opts): key (default "s"), read_fraction (default 0.1).
"""
from __future__ import annotations

import random
from typing import Any, Mapping

from chaos.errors import BadInput
from workloads.register import VALUES_PER_PROCESS


class SetGenerator:
    """Picklable op generator; per-process counters live in each worker process."""

    def __init__(self, key: str, read_fraction: float):
        self.key = key
        self.read_fraction = read_fraction
        self._counts: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "read_fraction": self.read_fraction}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["key"], state["read_fraction"])  # type: ignore[misc]

    def __call__(self, rng: random.Random, process: int) -> dict[str, Any]:
        if rng.random() < self.read_fraction:
            return {"f": "read-set", "key": self.key, "value": None}
        n = self._counts.get(process, 0)
        if n >= VALUES_PER_PROCESS:
            raise RuntimeError(f"process {process} added {n} elements; unique range exhausted")
        self._counts[process] = n + 1
        return {"f": "add", "key": self.key, "value": process * VALUES_PER_PROCESS + n}


class SetFinalOps:
    """One final read-set per node, routed to that node."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, nodes: list[str]) -> list[dict[str, Any]]:
        return [{"f": "read-set", "key": self.key, "value": None, "node": n, "final": True}
                for n in nodes]


def set_workload(opts: Mapping[str, Any]):
    from workloads import Workload

    key = str(opts.get("key", "s"))
    try:
        frac = float(opts.get("read_fraction", 0.1))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"set workload: bad read_fraction: {exc}") from exc
    if not 0 <= frac < 1:
        raise BadInput(f"set workload: read_fraction must be in [0, 1), got {frac}")
    return Workload(name="set", generator=SetGenerator(key, frac), final_ops=SetFinalOps(key),
                    checkers=["lost-writes", "perf", "dual-leaders"],
                    opts={"key": key, "read_fraction": frac})
