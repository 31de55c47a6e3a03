"""The register workload: read / write / cas over a few keys, every written value unique.

Unique values are what make stale reads and linearizability checkable cheaply: a read's value
names the one write it came from. A value is `process * 1_000_000 + n` (n counts that
process's writes), and process ids never repeat in a run, so values never repeat either.
A cas expects a value recently written to that key (from this worker's view), so a fair share
of them can succeed; otherwise it expects None, the initial value.

Options (opts): keys (default 5), read / write / cas weights (default 0.5 / 0.3 / 0.2).
"""
from __future__ import annotations

import random
import threading
from collections import deque
from typing import Any, Mapping

from chaos.errors import BadInput
from workloads.slots import SlotStates

RECENT = 8


class RegisterGenerator:
    """Picklable op generator; its per-slot counters (workloads.slots) and recent values live
    in each worker process."""

    def __init__(self, keys: int, weights: tuple[float, float, float]):
        self.keys = [f"k{i}" for i in range(keys)]
        self.weights = weights
        self._slots = SlotStates()
        self._recent: dict[str, deque[int]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"keys": self.keys, "weights": self.weights}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(len(state["keys"]), tuple(state["weights"]))  # type: ignore[misc]

    def __call__(self, rng: random.Random, process: int, slots: int) -> dict[str, Any]:
        # Always the same three draws per op: the rng stream (hence the op sequence of a
        # process) must not depend on what other processes did, or seeds would not replay.
        key = rng.choice(self.keys)
        f = rng.choices(("read", "write", "cas"), weights=self.weights)[0]
        pick = rng.random()
        if f == "read":
            return {"f": "read", "key": key, "value": None}
        with self._lock:
            new = self._slots.get(process, slots).next_value()
            recent = self._recent.setdefault(key, deque(maxlen=RECENT))
            if f == "write":
                recent.append(new)
                return {"f": "write", "key": key, "value": new}
            expected = recent[int(pick * len(recent))] if recent else None
            recent.append(new)
        return {"f": "cas", "key": key, "value": [expected, new]}


def register_workload(opts: Mapping[str, Any]):
    from workloads import Workload

    try:
        keys = int(opts.get("keys", 5))
        weights = (float(opts.get("read", 0.5)), float(opts.get("write", 0.3)),
                   float(opts.get("cas", 0.2)))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"-W: the register workload needs numbers: {exc}") from exc
    if keys < 1:
        raise BadInput(f"-W keys: must be >= 1, got {keys}")
    if min(weights) < 0 or sum(weights) <= 0:
        raise BadInput("-W read/write/cas: weights must be >= 0, not all 0")
    return Workload(name="register", generator=RegisterGenerator(keys, weights),
                    checkers=["stale-reads", "linearizable", "perf", "dual-leaders"],
                    opts={"keys": keys, "read": weights[0], "write": weights[1],
                          "cas": weights[2]})
