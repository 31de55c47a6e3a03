"""Workloads: what the clients do, as data (DESIGN §3 and §4).

A workload is a `Workload`: an op generator each logical client process calls for its next
invoke, the final ops to run after healing (set: one read per node), and the checkers that
apply to its history. The runner (chaos.workload) owns processes, threads and time; a workload
only says *what* to ask. `get(name, opts)` is the one entry point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
import random

from chaos.errors import BadInput

#: generator(rng, process, slots) -> {"f": ..., "key": ..., "value": ..., optional "node"}
Generator = Callable[[random.Random, int, int], dict[str, Any]]
#: final_ops(nodes, keys) -> invokes (each routed by "node")
FinalOps = Callable[[list[str], list[Any]], list[dict[str, Any]]]


def _no_final_ops(nodes: list[str], keys: list[Any]) -> list[dict[str, Any]]:
    return []


@dataclass
class Workload:
    """One workload. Must pickle (worker processes receive it), so callables are module-level
    functions or instances of module-level classes.

    name:      "register", "set", ...
    generator: the next invoke's fields for logical process `process`; called from that
               process's thread only, with that process's own seeded `rng`. `slots` is the
               run's concurrency: `process % slots` is the process's slot, which the process
               that replaces a retired one keeps (chaos.workload), so per-slot state (a
               counter, the key being filled) survives retirements and stays bounded by the
               concurrency, not by the number of processes an hour of faults retires
    final_ops: invokes to run once, after the last heal and quiescence (routed by "node"),
               given the nodes and the keys the run's client ops used (first-seen order)
    checkers:  names of the checkers that apply (chaos.checkers)
    opts:      the options it was built with (recorded in config.json)
    """

    name: str
    generator: Generator
    final_ops: FinalOps = _no_final_ops
    checkers: list[str] = field(default_factory=list)
    opts: dict[str, Any] = field(default_factory=dict)

    @property
    def takes_final_ops(self) -> bool:
        """Whether final ops follow the load (a history of this workload needs them)."""
        return bool(self.final_ops(["n1"], []))


def _builders() -> dict[str, Callable[[Mapping[str, Any]], Workload]]:
    from workloads.register import register_workload
    from workloads.set import set_workload
    return {"register": register_workload, "set": set_workload}


NAMES = ("register", "set")


#: the options each workload takes (`-W KEY=VALUE`); "seed" is always passed and may be unused
OPTIONS = {"register": ("keys", "read", "write", "cas"),
           "set": ("key", "read_fraction", "adds_per_key")}


def get(name: str, opts: Mapping[str, Any] | None = None) -> Workload:
    """The workload called `name`, built with `opts`; BadInput naming the valid ones if unknown
    (the workload, or an option it does not take)."""
    builders = _builders()
    if name not in builders:
        known = ", ".join(sorted(builders))
        raise BadInput(f"--workload: unknown workload {name!r}; known: {known}")
    opts = dict(opts or {})
    # (no set() here: importing workloads.set binds the name `set` in this package)
    unknown = sorted(k for k in opts if k not in OPTIONS[name] and k != "seed")
    if unknown:
        raise BadInput(f"-W {unknown[0]}: the {name} workload has no such option; it takes "
                       f"{', '.join(OPTIONS[name])}")
    return builders[name](opts)


__all__ = ["NAMES", "OPTIONS", "FinalOps", "Generator", "Workload", "get"]
