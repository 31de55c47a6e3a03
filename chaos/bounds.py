"""The accepted range of every number of a run's config: one table for checks and help text.

`chaos run` rejects a number outside its range before anything starts (exit 4, naming the
option), and so does `--replay` for a stored config.json, because both go through
`RunConfig.validate` -> `check_config`. The ranges are wide enough for any real test and
narrow enough that a typo (`--time-limit 1e9`, `--latency-ms -5`, `inf`, `nan`) cannot hang
the schedule builder, eat memory, or run a whole test only to fail at the first fault:

=====================  ============================================  =====================
option                 range                                         why the limit
=====================  ============================================  =====================
--nodes                1 .. 15 (integer)                             mesh size grows as n²
--concurrency          1 .. 1000 (integer)                           one thread per client
--time-limit           0 < S <= 604800 (7 days), finite              the schedule is built
--nemesis-interval     0.1 <= S <= 86400, finite; at most            up front, in memory
                       MAX_FAULTS faults in the time limit
--latency-ms           0 .. 3600000 (one hour, integer)              the proxy's own limit
jitter_ms (config)     0 .. 3600000 (integer)
--rate                 0 < R <= 1000000 ops/s, finite (0 on the CLI means unlimited)
--quiesce              0 <= S <= 3600, finite
--op-timeout           0 < S <= 3600, finite
=====================  ============================================  =====================

Fault kinds that act on links between nodes (every net fault of chaos.faults, i.e. one that
`needs` a net capability: partition, latency, bandwidth) are refused with a single node,
where they would silently do nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chaos.errors import BadInput
from chaos.faults import FAULTS

#: the most faults one schedule may hold (it is built in memory before the run starts)
MAX_FAULTS = 100_000


def link_kinds(kinds: set[str]) -> set[str]:
    """The kinds among `kinds` that act on node-to-node links (so need at least two nodes)."""
    return {k for k in kinds if k in FAULTS and FAULTS[k].needs}


@dataclass(frozen=True)
class Bound:
    """The accepted values of one numeric option: a type, a range, and whether None is allowed."""

    option: str            # the CLI spelling, used in messages
    integer: bool          # int only (bool is never a number here)
    low: float
    high: float
    low_open: bool = False  # low itself excluded
    none_ok: bool = False
    unit: str = ""

    def problem(self, value: Any) -> str | None:
        """Why `value` is not accepted, or None when it is."""
        if value is None and self.none_ok:
            return None
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            want = "an integer" if self.integer else "a number"
            return f"{self.option} must be {want} (got {value!r})"
        if not math.isfinite(value):
            return f"{self.option} must be a finite number (got {value!r})"
        if self.low_open and value <= self.low:
            return f"{self.option} must be positive (got {_num(value)})" if self.low == 0 else \
                f"{self.option} must be more than {_num(self.low)}{self.unit} (got {_num(value)})"
        if not self.low_open and value < self.low:
            return f"{self.option} must be at least {_num(self.low)}{self.unit} (got {_num(value)})"
        if value > self.high:
            return f"{self.option} must be at most {_num(self.high)}{self.unit} (got {_num(value)})"
        return None

    def describe(self) -> str:
        """The range as help text shows it, e.g. "0 < x <= 604800"."""
        low = "<" if self.low_open else "<="
        return f"{_num(self.low)} {low} x <= {_num(self.high)}"


def _num(x: float) -> str:
    """A number as a person writes it: 3600000, 0.1, 1e+20 (not 3.6e+06)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


#: RunConfig field -> its bound (see the module doc for the reasons)
BOUNDS: dict[str, Bound] = {
    "nodes": Bound("--nodes", True, 1, 15),
    "concurrency": Bound("--concurrency", True, 1, 1000),
    "time_limit": Bound("--time-limit", False, 0, 7 * 24 * 3600, low_open=True, unit=" s"),
    "nemesis_interval": Bound("--nemesis-interval", False, 0.1, 24 * 3600, unit=" s"),
    "latency_ms": Bound("--latency-ms", True, 0, 3_600_000),
    "jitter_ms": Bound("jitter_ms", True, 0, 3_600_000),
    "rate": Bound("--rate", False, 0, 1_000_000, low_open=True, none_ok=True),
    "quiesce": Bound("--quiesce", False, 0, 3600, unit=" s"),
    "op_timeout": Bound("--op-timeout", False, 0, 3600, low_open=True, unit=" s"),
}

#: RunConfig field -> (the type it must have, CLI spelling) for the non-numeric fields
_SHAPES: dict[str, tuple[tuple[type, ...], str]] = {
    "target": ((str,), "--target"), "workload": ((str,), "--workload"),
    "runtime": ((str, type(None)), "--runtime"), "net": ((str,), "--net"),
    "client_placement": ((str,), "--client-placement"),
    "partition_shape": ((str,), "--partition-shape"), "store": ((str,), "--store"),
    "partition_mode": ((str,), "--partition-mode"), "clock": ((str,), "--clock"),
    "seed": ((int,), "--seed"), "nemesis": ((list,), "--nemesis"),
    "target_options": ((dict,), "-O"), "runtime_options": ((dict,), "runtime options"),
    "workload_options": ((dict,), "-W"),
    "test_name": ((str, type(None)), "test_name"),
}


def expected_faults(time_limit: float, interval: float) -> int:
    """How many faults make_schedule's rhythm (calm, fault, calm, ...) fits in the time limit."""
    return int((time_limit + 1e-9) // (2 * interval))


def problems(cfg: Any) -> list[str]:
    """Every reason the config `cfg` (a RunConfig) cannot run; empty when it can."""
    out: list[str] = []
    for name, (types, option) in _SHAPES.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, types):
            out.append(f"{option} has the wrong type ({type(value).__name__}: {value!r})")
    if isinstance(cfg.nemesis, list) and not all(isinstance(k, str) for k in cfg.nemesis):
        out.append(f"--nemesis must be a list of fault kinds (got {cfg.nemesis!r})")
    for name, bound in BOUNDS.items():
        problem = bound.problem(getattr(cfg, name))
        if problem:
            out.append(problem)
    if out:
        return out
    from chaos.schedule import kinds_of

    kinds = set(kinds_of(cfg.nemesis))
    # ssh: the node count is the nodes file's, known once prepare() has read it ("hosts")
    counted = cfg.runtime != "ssh" or bool((cfg.runtime_options or {}).get("hosts"))
    if cfg.nodes < 2 and link_kinds(kinds) and counted:
        bad = ", ".join(sorted(link_kinds(kinds)))
        out.append(f"--nemesis {bad} needs at least 2 nodes (--nodes {cfg.nodes}: there is no "
                   "link between nodes to cut or slow); use --nodes 3, or --nemesis kill,pause")
    if kinds and cfg.schedule is None:
        n = expected_faults(cfg.time_limit, cfg.nemesis_interval)
        if n > MAX_FAULTS:
            out.append(f"--nemesis-interval {_num(cfg.nemesis_interval)} with --time-limit "
                       f"{_num(cfg.time_limit)} makes {n} faults; at most {MAX_FAULTS}: use a "
                       f"longer interval (at least "
                       f"{cfg.time_limit / (2 * MAX_FAULTS):.3g} s) or a shorter time limit")
    for i, spec in enumerate(cfg.schedule or []):
        start, stop = getattr(spec, "start_s", None), getattr(spec, "stop_s", None)
        if not (isinstance(start, (int, float)) and isinstance(stop, (int, float))
                and math.isfinite(start) and math.isfinite(stop) and 0 <= start <= stop):
            out.append(f"schedule entry {i + 1}: start_s/stop_s must be finite with "
                       f"0 <= start_s <= stop_s (got {start!r}, {stop!r})")
            break
    return out


def check_config(cfg: Any) -> None:
    """Raise BadInput listing every problem of `cfg` (a RunConfig), each naming its option."""
    found = problems(cfg)
    if found:
        raise BadInput("; ".join(found))


def no_fault_warning(cfg: Any) -> str | None:
    """The warning for a run that asked for faults but whose schedule holds none, else None."""
    if not cfg.nemesis or cfg.schedule:
        return None
    need = 2 * cfg.nemesis_interval
    return (f"no faults will be injected: the first fault would start at "
            f"{_num(cfg.nemesis_interval)} s and end at {_num(need)} s, after --time-limit "
            f"{_num(cfg.time_limit)} s; use --time-limit {_num(need)} or more, or a shorter "
            f"--nemesis-interval")
