"""The fault protocol and registry: each fault kind is one small object (DESIGN §3 Nemesis).

A fault kind says how it is scheduled (`schedule_params`), how it starts and stops (each
returning what it did and the problems its verification found), and how `heal` undoes it
when the run ends or is interrupted. The nemesis (chaos.nemesis) records every call as
history ops named `start_op` / `stop_op`. A new fault kind is one module that subclasses
`Fault` and calls `register(...)`; chaos.faults imports the built-in ones.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from chaos.errors import BadInput

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis

#: (what was done, JSON-able; the verification problems, [] = verified)
Outcome = tuple[dict[str, Any], list[str]]


class Fault:
    """One fault kind. Instances are stateless: the state of a run lives in its Nemesis."""

    #: the --nemesis name
    kind: str = ""
    #: history op names of the start and of the undo
    start_op: str = ""
    stop_op: str = ""
    #: net backend capabilities the fault needs (chaos.net.base.CAPABILITIES); empty: none
    needs: frozenset[str] = frozenset()
    #: part of `--nemesis all`
    in_all: bool = True
    #: faults sharing a key are healed by one call (every net fault: one net heal)
    heal_key: str = ""
    #: heal_all undoes lower values first (resume before restart before the network)
    heal_order: int = 50
    #: the fault can act on one named service of a node (params "service"; the CLI
    #: spelling `--nemesis kind:SERVICE`)
    per_service: bool = False

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        """The params of one scheduled occurrence (opts: the schedule's options)."""
        return {}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def heal(self, nem: Nemesis) -> Outcome:
        """Undo whatever this kind still has applied (idempotent; nothing applied: ({}, []))."""
        return {}, []


FAULTS: dict[str, Fault] = {}


def register(fault: Fault) -> Fault:
    """Add a fault kind to the registry (its kind must be new)."""
    if not fault.kind or fault.kind in FAULTS:
        raise ValueError(f"fault kind {fault.kind!r} is empty or registered twice")
    FAULTS[fault.kind] = fault
    return fault


def get(kind: str) -> Fault:
    """The registered fault kind; BadInput naming the choices when unknown."""
    try:
        return FAULTS[kind]
    except KeyError:
        raise BadInput(f"unknown fault kind {kind!r}; choose from {', '.join(FAULTS)}") from None


def needs_of(kinds: list[str]) -> frozenset[str]:
    """The net capabilities a list of fault kinds needs together."""
    out: set[str] = set()
    for kind in kinds:
        out |= get(kind).needs
    return frozenset(out)
