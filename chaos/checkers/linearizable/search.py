"""Linearizability search for one key: Wing & Gong / Lowe, breadth-first and just in time.

The search walks the key's invoke and return events in real-time order and keeps the set of
*configurations* reachable so far: (model state, bitset of operations already linearized).
Bitsets are Python ints; a configuration is memoised the first time it is seen (the cache of
Wing & Gong / Lowe's algorithm, here a dict), so two orders that reach the same state with the
same ops done are explored once. At the return of op `o`, every configuration must linearize
`o` now: configurations that already did keep going; the others are extended by linearizing
pending ops, ending with `o` (Lowe's just-in-time linearization: nothing is linearized before
it is needed). No configuration left = no linearization exists: `o` is the op that cannot be
linearized, and the configurations just before are the longest linearizable prefixes.

Pruning, each sound for the reason given:

- read-only ops (reads, failed compares) are linearized the moment they are legal: they
  change nothing, so moving them earlier inside their own interval never hurts;
- an unknown-outcome op whose step would leave the state unchanged is never tried: the
  configuration without it may still use it later or never, so it covers the one with it
  (not so for an op that returned: it must take effect at some point, and later differs);
- ops whose outcome is unknown (`info`, never returned) may take effect at any time after
  their invoke or never; equal ones (same input) are interchangeable, so only the earliest
  unused one of each kind is tried, and a configuration that used a subset of another's
  unknown ops (same state, same other ops) covers it and the larger one is dropped.

The search is a generator that yields every few thousand model steps so a scheduler can share
time fairly between keys, and gives up (undecided) past a memory cap on configurations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator

from chaos.checkers.linearizable.models import Model

YIELD_EVERY = 4000  # model steps between yields to the scheduler


@dataclass(frozen=True)
class SearchOp:
    """One operation of a key as the search sees it.

    due:   True when the op returned (ok, or a fail the model observes): it must be
           linearized between `invoke_time` and `complete_time`. False for unknown outcome
           (info / never completed): it may be linearized after its invoke, or never.
    index: the invoke line's `index` in the history; `complete_index` the completion's (-1).
    """

    inp: tuple[str, Any]
    out: Any
    due: bool
    invoke_time: int
    complete_time: int
    index: int
    complete_index: int
    read_only: bool


@dataclass
class Outcome:
    """The verdict for one key: valid True/False/"unknown", plus evidence.

    For False: `stuck_on` (position in ops) could not be linearized at `time`; `linearized`
    (positions, in order) is the longest linearizable prefix; `pending` the ops open then;
    `state` the model state after the prefix. For "unknown": `reason` and the `window`
    (first, last time) of the part of the key that was not decided.
    """

    valid: bool | str
    steps: int = 0
    max_configs: int = 0
    stuck_on: int | None = None
    linearized: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    state: Any = None
    time: int | None = None
    reason: str | None = None
    window: tuple[int, int] | None = None


def _path_list(path: Any) -> list[int]:
    out: list[int] = []
    while path is not None:
        out.append(path[0])
        path = path[1]
    out.reverse()
    return out


def search(model: Model, ops: list[SearchOp], max_configs: int = 1_000_000
           ) -> Generator[None, None, Outcome]:
    """Decide whether `ops` (one key) are linearizable w.r.t. `model`; see the module doc.

    A generator: drive it with next() until StopIteration, whose value is the Outcome.
    `max_configs` caps live plus freshly explored configurations (memory budget).
    """
    step = model.step
    events: list[tuple[int, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.invoke_time, 0, i))
        if op.due:
            events.append((op.complete_time, 1, i))
    events.sort()  # at equal times invokes come first: closed intervals, the permissive order

    configs: dict[tuple[Any, int], Any] = {(model.init(), 0): None}
    pending_ro: list[int] = []      # due read-only ops invoked and not yet returned
    pending_upd: list[int] = []     # due updating ops invoked and not yet returned
    unknown_kinds: dict[Any, list[int]] = {}  # unknown-outcome ops by input, in invoke order
    unknown_mask = 0
    steps = 0
    budget = YIELD_EVERY
    peak = 1

    def saturate(state: Any, mask: int, path: Any) -> tuple[int, Any]:
        """Linearize every pending read-only op that is legal in `state`."""
        for j in pending_ro:
            b = 1 << j
            if not mask & b:
                op = ops[j]
                if step(state, op.inp, op.out)[0]:
                    mask |= b
                    path = (j, path)
        return mask, path

    for ev_time, kind, i in events:
        op = ops[i]
        bit = 1 << i
        if kind == 0:  # invoke
            if not op.due:
                unknown_kinds.setdefault(op.inp, []).append(i)
                unknown_mask |= bit
            elif op.read_only:
                pending_ro.append(i)
                new: dict[tuple[Any, int], Any] = {}
                for (s, m), path in configs.items():
                    if step(s, op.inp, op.out)[0]:
                        m |= bit
                        path = (i, path)
                    if (s, m) not in new:
                        new[(s, m)] = path
                configs = new
                steps += len(new)
            else:
                pending_upd.append(i)
            continue

        # return of op i: every configuration must have linearized it by now
        new = {}
        seen: set[tuple[Any, int]] = set(configs)
        stack: list[tuple[Any, int, Any]] = []
        for (s, m), path in configs.items():
            if m & bit:
                key = (s, m & ~bit)
                if key not in new:
                    new[key] = path
            else:
                stack.append((s, m, path))
        while stack:
            s, m, path = stack.pop()
            cands = [j for j in pending_upd if not m & (1 << j)]
            for members in unknown_kinds.values():
                for j in members:
                    if not m & (1 << j):
                        cands.append(j)
                        break
            for j in cands:
                cop = ops[j]
                legal, s2 = step(s, cop.inp, cop.out)
                steps += 1
                if not legal or (s2 == s and not cop.due):
                    continue
                m2 = m | (1 << j)
                path2 = (j, path)
                if s2 != s:
                    m2, path2 = saturate(s2, m2, path2)
                if m2 & bit:
                    key = (s2, m2 & ~bit)
                    if key not in new:
                        new[key] = path2
                elif (s2, m2) not in seen:
                    seen.add((s2, m2))
                    stack.append((s2, m2, path2))
            if steps >= budget:
                budget = steps + YIELD_EVERY
                if len(seen) + len(new) > max_configs:
                    return Outcome(valid="unknown", steps=steps, max_configs=len(seen),
                                   reason=f"memory cap of {max_configs} configurations reached",
                                   window=(op.invoke_time, events[-1][0]), time=ev_time)
                yield
        peak = max(peak, len(seen), len(new))

        if not new:
            return _refuted(configs, ops, i, pending_ro, pending_upd, unknown_kinds, ev_time,
                            steps, peak)

        if op.read_only:
            pending_ro.remove(i)
        else:
            pending_upd.remove(i)
        if unknown_mask:
            new = _drop_covered(new, unknown_mask)
        configs = new
    return Outcome(valid=True, steps=steps, max_configs=peak)


def _drop_covered(configs: dict[tuple[Any, int], Any], unknown_mask: int
                  ) -> dict[tuple[Any, int], Any]:
    """Keep only configurations whose used unknown ops are minimal for their (state, due ops).

    Used unknown ops are always the earliest of each kind, so "uses a subset" is exactly
    "can still do everything the other can": the superset configuration adds nothing.
    """
    groups: dict[tuple[Any, int], list[tuple[int, int, Any]]] = {}
    for (s, m), path in configs.items():
        groups.setdefault((s, m & ~unknown_mask), []).append((m & unknown_mask, m, path))
    out: dict[tuple[Any, int], Any] = {}
    for (s, _), members in groups.items():
        if len(members) == 1:
            _, m, path = members[0]
            out[(s, m)] = path
            continue
        members.sort(key=lambda t: t[0].bit_count())
        kept: list[int] = []
        for used, m, path in members:
            if any(k & ~used == 0 for k in kept):
                continue
            kept.append(used)
            out[(s, m)] = path
    return out


def _refuted(configs: dict[tuple[Any, int], Any], ops: list[SearchOp], stuck: int,
             pending_ro: list[int], pending_upd: list[int], unknown_kinds: dict[Any, list[int]],
             time: int, steps: int, peak: int) -> Outcome:
    """Build the counterexample from the configurations alive just before the failing return."""
    best_path: list[int] = []
    best_state: Any = None
    for (s, _m), path in configs.items():
        lst = _path_list(path)
        if best_state is None and not best_path or len(lst) > len(best_path):
            best_path, best_state = lst, s
    done = set(best_path)
    pending = sorted(j for j in pending_ro + pending_upd if j != stuck and j not in done)
    pending += sorted(j for members in unknown_kinds.values() for j in members
                      if j not in done)
    return Outcome(valid=False, steps=steps, max_configs=peak, stuck_on=stuck,
                   linearized=best_path, pending=pending, state=best_state, time=time)
