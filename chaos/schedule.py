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

__all__ = ["KINDS", "NAMES", "SHAPES", "FaultSpec", "make_schedule", "parse_nemeses",
           "split_kind"]

#: what `--nemesis all` means (the registry's in_all kinds, in registration order)
KINDS = tuple(k for k, f in FAULTS.items() if f.in_all)
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
    """'partition' | 'all' | 'kill,pause' | 'kill:agent' | 'none' -> list of kinds (a kind
    with `:SERVICE` acts on that one service of a node); BadInput names the bad one."""
    text = (text or "none").strip()
    if text in ("none", ""):
        return []
    if text == "all":
        return list(KINDS)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for item in kinds:
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


def split_kind(item: str) -> tuple[str, str | None]:
    """'kill:agent' -> ('kill', 'agent'); 'kill' -> ('kill', None)."""
    kind, _, service = item.partition(":")
    return kind, (service.strip() or None)


def make_schedule(kinds: list[str], *, interval: float, time_limit: float, seed: int,
                  shape: str = "isolate-leader", latency_ms: int = 200,
                  jitter_ms: int = 50, **extra: Any) -> list[FaultSpec]:
    """Jepsen's rhythm: `interval` s healthy, `interval` s faulty, repeated within the limit.

    With several kinds the schedule cycles through them in a seeded random order, so every kind
    occurs. shape "mixed" picks a partition shape per fault from SHAPES. Each occurrence's
    params come from its fault kind (chaos.faults: `schedule_params`); `extra` options are
    passed to them (e.g. bandwidth_kb).
    """
    if not kinds:
        return []
    opts = {"shape": shape, "latency_ms": latency_ms, "jitter_ms": jitter_ms, **extra}
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    specs: list[FaultSpec] = []
    t = interval
    i = 0
    while t + interval <= time_limit + 1e-9:
        kind, service = split_kind(order[i % len(order)])
        params = FAULTS[kind].schedule_params(rng, opts)
        if service is not None:
            params["service"] = service
        specs.append(FaultSpec(kind, round(t, 3), round(t + interval, 3), params))
        t += 2 * interval
        i += 1
    return specs
