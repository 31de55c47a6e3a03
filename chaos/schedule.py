"""Fault schedules: which fault starts and stops when, decided up front from the seed.

The whole schedule is data (a list of FaultSpec) written to config.json before the first fault,
so `chaos run --replay DIR` re-runs exactly the same faults at the same offsets. What a spec
resolves to at run time (which node was leader and so got isolated) goes in the history.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.errors import BadInput
from chaos.faults import FAULTS
from chaos.faults.shapes import SHAPES

__all__ = ["ALL_COMBOS", "KINDS", "NAMES", "SHAPES", "FaultSpec", "all_items", "events",
           "kinds_of", "make_schedule", "parse_nemeses", "split_kind"]

#: what `--nemesis all` means on every target (the registry's in_all kinds, in registration
#: order); all_items adds the combinations below for a target that takes their kinds
KINDS = tuple(k for k, f in FAULTS.items() if f.in_all)
#: combined items `--nemesis all` adds when the target takes every optional kind in them
#: (chaos.target.optional_faults), each started in the order written and stopped in reverse:
#: the leader cut off, then its clock drifting; a follower wiped, then the leader killed (it
#: restarts before the rejoined follower's catch-up is checked); a follower removed from the
#: configuration, then the leader cut off (healed before the follower is added back)
ALL_COMBOS = ("partition+clock", "member+kill", "membership+partition")
#: the clock fault inside `all` when --clock is left at its default (mixed): the leader's
#: clocks drift by 10 % (x0.9 or x1.1), within the bound a lease design assumes; the
#: unbounded modes (offset, bump, strobe, big rates) stay their own experiment (--nemesis clock)
ALL_CLOCK = "drift"
#: every fault kind --nemesis accepts (plus "all", "none" and comma lists)
NAMES = tuple(FAULTS)


@dataclass(frozen=True)
class FaultSpec:
    """One fault: start at `start_s`, undone at `stop_s` (seconds since the test began)."""

    kind: str
    start_s: float
    stop_s: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultSpec:
        return cls(kind=d["kind"], start_s=float(d["start_s"]), stop_s=float(d["stop_s"]),
                   params=dict(d.get("params") or {}))


def parse_nemeses(text: str) -> list[str]:
    """'partition' | 'all' | 'kill,pause' | 'kill:agent' | 'partition+clock' | 'none' -> list
    of items (a kind with `:SERVICE` acts on that one service of a node; kinds joined by
    `+` start together and stop together); BadInput names the bad one."""
    text = (text or "none").strip()
    if text in ("none", ""):
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for item in (part.strip() for k in kinds if k != "all" for part in k.split("+")):
        k, sep, service = item.partition(":")
        if k not in FAULTS:  # the live registry: a fault registered later is accepted too
            raise BadInput(f"--nemesis: unknown nemesis {k!r}; choose from "
                           f"{', '.join(FAULTS)}, all, none, or a comma list")
        if sep and not FAULTS[k].per_service:
            takes = ", ".join(f for f, fault in FAULTS.items() if fault.per_service)
            raise BadInput(f"--nemesis {item}: {k} acts on links or whole nodes; only {takes} "
                           "take a service (kill:SERVICE)")
        if sep and not service.strip():
            raise BadInput(f"--nemesis {item}: name the service after the colon (kill:SERVICE)")
    return kinds


def kinds_of(items: list[str]) -> list[str]:
    """The fault kinds in parse_nemeses' items ('partition+clock', 'kill:agent' ...); "all"
    counts as its kinds on every target (KINDS)."""
    items = [x for item in items for x in (KINDS if item == "all" else (item,))]
    return list(dict.fromkeys(split_kind(part)[0] for item in items
                              for part in item.split("+")))


def all_items(optional: frozenset[str] = frozenset()) -> list[str]:
    """What `--nemesis all` means for a target taking the optional fault kinds `optional`:
    KINDS, then each ALL_COMBOS item whose optional kinds the target all takes."""
    extra = [c for c in ALL_COMBOS
             if all(k in optional or not FAULTS[k].optional for k in kinds_of([c]))]
    return list(KINDS) + extra


def split_kind(item: str) -> tuple[str, str | None]:
    """'kill:agent' -> ('kill', 'agent'); 'kill' -> ('kill', None)."""
    kind, _, service = item.partition(":")
    return kind, (service.strip() or None)


def make_schedule(kinds: list[str], *, interval: float, time_limit: float, seed: int,
                  shape: str = "isolate-leader", latency_ms: int = 200,
                  jitter_ms: int = 50, optional: frozenset[str] = frozenset(),
                  **extra: Any) -> list[FaultSpec]:
    """Jepsen's rhythm: `interval` s healthy, `interval` s faulty, repeated within the limit.

    With several kinds the schedule cycles through them in a seeded random order, so every kind
    occurs. An item 'a+b' is one combined occurrence: a spec per kind with the same window,
    started in the order written and stopped in reverse (partition+clock: the leader is cut
    off, then its clock skewed). shape "mixed" picks a partition shape per fault from SHAPES.
    Each occurrence's params come from its fault kind (chaos.faults: `schedule_params`);
    `extra` options are passed to them (e.g. bandwidth_kb, clock). An item "all" is
    all_items(optional): `optional` are the target's optional fault kinds; the clock of an
    item from `all` is ALL_CLOCK unless `clock` says otherwise than "mixed".
    """
    if not kinds:
        return []
    opts = {"shape": shape, "latency_ms": latency_ms, "jitter_ms": jitter_ms, **extra}
    from_all = set(all_items(optional)) - set(kinds) if "all" in kinds else set()
    kinds = [x for k in kinds for x in (all_items(optional) if k == "all" else (k,))]
    kinds = list(dict.fromkeys(kinds))
    all_opts = {**opts, "clock": ALL_CLOCK} if opts.get("clock", "mixed") == "mixed" else opts
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    specs: list[FaultSpec] = []
    t = interval
    i = 0
    while t + interval <= time_limit + 1e-9:
        item = order[i % len(order)]
        for part in item.split("+"):
            kind, service = split_kind(part.strip())
            params = FAULTS[kind].schedule_params(rng, all_opts if item in from_all else opts)
            if service is not None:
                params["service"] = service
            specs.append(FaultSpec(kind, round(t, 3), round(t + interval, 3), params))
        t += 2 * interval
        i += 1
    return specs


def events(specs: list[FaultSpec]) -> list[tuple[float, str, FaultSpec]]:
    """The schedule as (offset s, "start" | "stop", spec) in the order to act: by time;
    at one instant the stops first (newest first), then the starts in schedule order."""
    out: list[tuple[float, int, int, str, FaultSpec]] = []
    for i, spec in enumerate(specs):
        out.append((spec.start_s, 1, i, "start", spec))
        out.append((spec.stop_s, 0, -i, "stop", spec))
    return [(t, what, spec) for t, _, _, what, spec in sorted(out, key=lambda e: e[:3])]
