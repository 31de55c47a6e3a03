"""The fault protocol and registry: each fault kind is one small object (DESIGN §3 Nemesis).

A fault kind says how it is scheduled (`schedule_params`), how it starts and stops (each
returning what it did and the problems its verification found), and how `heal` undoes it
when the run ends or is interrupted. The nemesis (chaos.nemesis) records every call as
history ops named `start_op` / `stop_op`. A new fault kind is one module that subclasses
`Fault` and calls `register(...)`; chaos.faults imports the built-in ones.

A fault may need something of the nodes (a library loaded into every service, a Debian
package on every node host or image): `node_env` / `node_files` / `packages` / `files` say
what, for every target alike (the run adds them to every service when the schedule holds
the kind; `chaos image build` and `chaos doctor` install the packages). A fault that only
works on targets that say so (`optional`) is refused up front (exit 4) on the others: the
target lists it in `Target.faults` (chaos.target).
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
    #: only for targets that take this kind (chaos.target.optional_faults: listed in
    #: `Target.faults`, or "membership" with `Target.membership`); others: refused up front
    optional: bool = False
    #: Debian packages every node host / node image needs for this fault
    packages: tuple[str, ...] = ()
    #: files (absolute paths) every node host needs -> the Debian package providing each;
    #: checked like the target's binaries before a run that schedules this kind
    files: dict[str, str] = {}

    def node_env(self, data_dir: str) -> dict[str, str]:
        """Environment every service of a node starts with when the run schedules this kind
        (data_dir: the node's data directory on its host)."""
        return {}

    def node_files(self) -> dict[str, str]:
        """Files (relative to the node's data dir) written before a node's FIRST start when
        the run schedules this kind (a restart keeps what a running fault wrote)."""
        return {}

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


def node_setup(kinds: list[str], data_dir: str, first: bool) -> tuple[dict[str, str],
                                                                     dict[str, str]]:
    """(environment, files) every service of a node gets for the scheduled fault kinds;
    files only on the node's first start (`first`)."""
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    for kind in dict.fromkeys(kinds):
        env.update(get(kind).node_env(data_dir))
        if first:
            files.update(get(kind).node_files())
    return env, files


def packages_of(kinds: list[str]) -> tuple[str, ...]:
    """The Debian packages the fault kinds need on node hosts and images, each once."""
    return tuple(dict.fromkeys(p for kind in kinds for p in get(kind).packages))


def host_files_of(kinds: list[str]) -> dict[str, str]:
    """Files the fault kinds need on every node host -> the package providing each."""
    out: dict[str, str] = {}
    for kind in kinds:
        out.update(get(kind).files)
    return out


def refused(kinds: list[str], target_name: str, supported: frozenset[str]) -> None:
    """BadInput naming the first optional fault kind the target does not take."""
    for kind in kinds:
        fault = get(kind)
        if fault.optional and kind not in supported:
            takes = ", ".join(sorted(supported)) or "none"
            raise BadInput(f"--nemesis {kind}: target {target_name} does not support the "
                           f"{kind} fault (its optional faults: {takes}); see "
                           "docs/targets.md, 'Optional faults'")


def needs_of(kinds: list[str]) -> frozenset[str]:
    """The net capabilities a list of fault kinds needs together."""
    out: set[str] = set()
    for kind in kinds:
        out |= get(kind).needs
    return frozenset(out)
