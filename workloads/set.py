"""The set workload: add unique elements to sets on rotating keys, read the set being filled
now and then, read every key on every node at the end.

Why rotating keys: a read returns its whole set, so one ever-growing set makes reads, and the
history, grow with the square of the run (a 120 s run at full speed wrote 4.8 GB, 443 KB per
read, and slowed down as its reads grew). As Jepsen's set-full does, each key takes a bounded
number of adds, then the clients move on to the next key: a read returns at most about
`adds_per_key` elements and the history grows linearly with the ops.

Keys, deterministic for a seed across worker processes: logical process slot s (=
process % concurrency; the process that replaces a retired one keeps its slot, chaos.workload)
counts its adds n_s, and its n-th add goes to key f"{key}{n_s // quota}" with
quota = max(1, adds_per_key // concurrency). Every slot walks the same key sequence s0, s1, ...
at its own pace, so the concurrent clients overlap on a key (a slot slowed by faults lags a
key or two behind: a few keys are open at once) and a key takes at most
quota * concurrency <= max(adds_per_key, concurrency) adds. A read reads the key its slot is
filling.

Every element is added once (`process * 1_000_000 + n`, unique over the run) to one key, and
the checkers judge an element by (key, element): an element acknowledged on key k is lost when
the final reads of key k lack it, whatever other keys hold (docs/verdicts.md). The final reads
are one read-set per key per node (routed there with "node", marked "final": true), over every
key the run's ops used; they run after the last heal and a quiescence period, so replicas that
still disagree show up as divergent.

Options (opts, `chaos run -W KEY=VALUE`): key (the key prefix, default "s"), read_fraction
(default 0.1), adds_per_key (default 256: a read then carries ~1.3 KB on average; larger means
fewer keys and final reads, but larger reads).
"""
from __future__ import annotations

import random
import threading
from typing import Any, Mapping

from chaos.errors import BadInput
from workloads.slots import SlotStates

DEFAULT_ADDS_PER_KEY = 256


class SetGenerator:
    """Picklable op generator; per-slot counters live in each worker process.

    State is per slot (workloads.slots, bounded by the concurrency): a retired process's
    counter restarts with its successor (new id, new elements), the slot's total keeps
    counting (its key sequence goes on).
    """

    def __init__(self, prefix: str, read_fraction: float, adds_per_key: int):
        self.prefix = prefix
        self.read_fraction = read_fraction
        self.adds_per_key = adds_per_key
        self._slots = SlotStates()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "read_fraction": self.read_fraction,
                "adds_per_key": self.adds_per_key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"], state["read_fraction"],  # type: ignore[misc]
                      state["adds_per_key"])

    def key(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def __call__(self, rng: random.Random, process: int, slots: int) -> dict[str, Any]:
        quota = max(1, self.adds_per_key // max(1, slots))
        is_read = rng.random() < self.read_fraction
        with self._lock:
            state = self._slots.get(process, slots)
            key = self.key(state.total // quota)
            if is_read:
                return {"f": "read-set", "key": key, "value": None}
            return {"f": "add", "key": key, "value": state.next_value()}


class SetFinalOps:
    """One final read-set per key per node, routed to that node (key-major: the reads of one
    key on all nodes are close in time). The first key is always read, so a run whose adds
    never got recorded still has final reads to show it."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, nodes: list[str], keys: list[Any]) -> list[dict[str, Any]]:
        first = f"{self.prefix}0"
        ordered = [first] + [k for k in keys if k != first]
        return [{"f": "read-set", "key": k, "value": None, "node": n, "final": True}
                for k in ordered for n in nodes]


def _number(opts: Mapping[str, Any], name: str, default: Any, kind: type) -> Any:
    try:
        return kind(opts.get(name, default))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"-W {name}: the set workload needs a number: {exc}") from exc


def set_workload(opts: Mapping[str, Any]):
    from workloads import Workload

    prefix = str(opts.get("key", "s"))
    frac = _number(opts, "read_fraction", 0.1, float)
    if not 0 <= frac < 1:
        raise BadInput(f"-W read_fraction: must be in [0, 1), got {frac}")
    per_key = _number(opts, "adds_per_key", DEFAULT_ADDS_PER_KEY, int)
    if per_key < 1:
        raise BadInput(f"-W adds_per_key: must be >= 1, got {per_key}")
    return Workload(name="set", generator=SetGenerator(prefix, frac, per_key),
                    final_ops=SetFinalOps(prefix),
                    checkers=["lost-writes", "perf", "dual-leaders"],
                    opts={"key": prefix, "read_fraction": frac, "adds_per_key": per_key})
