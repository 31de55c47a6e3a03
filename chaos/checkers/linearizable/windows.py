"""One key's history checked window by window, cut at its quiescent points.

A search over one key costs memory with the number of ops it holds in flight and the
configurations it memoises, so a key of a million ops is never searched whole. Instead its
ops are cut at *quiescent points*: a time T before which every op that returned (ok, or an
observed fail) had returned, and after which every later op is invoked. No op that must take
effect inside its interval spans T, so a linearization of the whole key is a linearization of
the ops before T followed by one of the ops after T: the windows can be searched in turn,
provided each starts from every state the previous one can end in.

That is the carry: the set of (model state, unknown-outcome ops still unused) the search can
end a window in (`search(..., ends=...)` explores every configuration of the window instead
of stopping at the first path). An op whose outcome is unknown (info, never returned) may take
effect at any time after its invoke, or never: it is not part of the cut rule, it is carried
into later windows, still unused in the ends that did not use it. The verdict is therefore the
whole-key search's verdict (tests/test_linearizable_windows.py checks it on generated
histories, valid and invalid). A carried unknown op is dropped from the carry once nothing
later can observe its effect (the model's `unknown_effect` / `observes`: taking effect
unobserved and then being overwritten is the same as never happening), so the carry stays
small; without those hooks every unknown op is carried.

A carry is a list of (state, frozenset of the `index` of the unknown ops still available);
`Carried` adds the ops themselves, so a carry can pass from one piece of a key to the next
(chaos.checkers.sharded checks the pieces a long key was split into, in time order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, Generator

from chaos.checkers.linearizable.models import Model
from chaos.checkers.linearizable.plan import UNTOLD
from chaos.checkers.linearizable.search import YIELD_EVERY, Outcome, SearchOp, search
from chaos.checkers.linearizable.witness import witness as witness_path

#: a window is cut only once it holds this many ops (the per-window cost is then amortised)
WINDOW_OPS = 200
#: distinct (state, unknown ops unused) a cut may carry; past it the key is undecided there
MAX_CARRY = 10_000
#: a window no path can do costs its path and its search: after each such window the next
#: path is tried that many windows later, twice as many each time (up to this), and at once
#: again after a path is found. A history whose ops take effect far from their completions
#: (wide, random intervals) then pays a path every few dozen windows, not every window.
MAX_BACKOFF = 32
#: Outcome.reason of a piece that must be checked again from the key's first piece, exactly:
#: the exact search of a window failed from a carry a witness path left (not every state the
#: key could be in), so the failure proves nothing (the caller redoes the key without paths)
REDO_EXACT = "a window failed from a witness path's carry: check the key again exactly"

_INVOKE_TIME = itemgetter(SearchOp._fields.index("invoke_time"))  # SearchOp.invoke_time
_INP = itemgetter(SearchOp._fields.index("inp"))
_OUT = itemgetter(SearchOp._fields.index("out"))


@dataclass
class Carried:
    """What one key carries across a cut: the states a window can end in, with the
    unknown-outcome ops each end has not used (by `SearchOp.index`), and those ops.

    `exact`: the ends are every state the key can be in at the cut. False once a window
    was decided by a witness path (chaos.checkers.linearizable.witness): its ends are then
    some of those states, enough to prove what follows valid, not to prove it invalid.
    """

    ends: list[tuple[Any, frozenset[int]]]
    unknown: dict[int, SearchOp] = field(default_factory=dict)
    exact: bool = True

    @staticmethod
    def initial(model: Model) -> "Carried":
        return Carried([(model.init(), frozenset())])


def windows(ops: list[SearchOp], min_ops: int = WINDOW_OPS) -> list[list[SearchOp]]:
    """`ops` (one key) in invoke-time order, cut at quiescent points into windows of at least
    `min_ops` ops (0: no cut). A cut falls before an op invoked strictly after every earlier
    op that must take effect (due) had returned; unknown-outcome ops do not block a cut."""
    order = sorted(ops, key=_INVOKE_TIME)
    if not min_ops or len(order) <= min_ops:
        return [order] if order else []
    out: list[list[SearchOp]] = []
    start = 0
    last_return = None
    for i, op in enumerate(order):
        if (i - start >= min_ops and last_return is not None
                and last_return < op.invoke_time):
            out.append(order[start:i])
            start = i
        if op.due and (last_return is None or op.complete_time > last_return):
            last_return = op.complete_time
    out.append(order[start:])
    return out


def observers(model: Model, ops: list[SearchOp]) -> set[Any] | None:
    """The values some op of `ops` could observe (model.observes); None when one may
    observe anything (or the model cannot say)."""
    return _union(observed(model, ops))


def observed(model: Model, ops: list[SearchOp]) -> list[Any]:
    """model.observes of each op of `ops`, in order (None: it may observe anything;
    UNTOLD where the model raised TypeError: it cannot say)."""
    try:
        return list(map(model.observes, map(_INP, ops), map(_OUT, ops)))
    except TypeError:
        return [_told(model, op) for op in ops]


def _told(model: Model, op: SearchOp) -> Any:
    try:
        return model.observes(op.inp, op.out)
    except TypeError:
        return UNTOLD


def _union(got: list[Any]) -> set[Any] | None:
    """The union of observes results (None if one is None or UNTOLD, or a value is
    unhashable)."""
    try:
        if None in got or UNTOLD in got:
            return None
        return set().union(*got)
    except TypeError:  # unhashable values: cannot tell
        return None


def check_key(model: Model, ops: list[SearchOp], max_configs: int,
              progress: dict[str, Any] | None = None, carry: Carried | None = None,
              collect: bool = False, min_ops: int = WINDOW_OPS,
              later_observes: Callable[[Any], bool] | None = None,
              paths: bool = True) -> Generator[None, None, Outcome]:
    """Search one key window by window (a generator like `search`); see the module doc.

    carry: where the key's earlier piece left off (None: the initial state). collect: also
    compute the carry out of the last window (Outcome.carry, a `Carried`), for a next piece.
    later_observes(value): whether an op after these ones (a later piece) may observe the
    effect `value` of an unknown op; None: nothing comes later.
    paths: try a witness path on each window first (chaos.checkers.linearizable.witness),
    searching only the windows it leaves (after a window no path does, paths pause: see
    MAX_BACKOFF). A path proves a window valid; its end is one of the window's ends, so a
    later window's search that fails from it proves nothing: the key is then searched
    again exactly from `carry` (or, when `carry` itself came from a path, the outcome is
    "unknown" with reason REDO_EXACT, for the caller to redo the key from its first
    piece). The verdict is the exact search's either way.
    """
    carried = carry if carry is not None else Carried.initial(model)
    parts = windows(ops, min_ops)
    if not parts:
        return Outcome(valid=True, carry=carried)
    effect = model.unknown_effect
    later = _Later(model, parts)
    steps = peak = 0
    budget = YIELD_EVERY
    skip, backoff = 0, 1  # windows left before the next path is tried; the next pause
    for w, part in enumerate(parts):
        last = w == len(parts) - 1
        unknown = sorted(carried.unknown.values(), key=lambda o: o.index)
        wops = unknown + part
        pos = {op.index: j for j, op in enumerate(unknown)}
        starts = []
        for state, avail in carried.ends:
            used = 0
            for idx, j in pos.items():
                if idx not in avail:
                    used |= 1 << j
            starts.append((state, used))
        ends: dict[Any, list[int]] | None = {} if (collect or not last) else None
        found = None
        if paths and not skip:
            found = witness_path(model, wops, starts)
            if found is None:  # try again after `backoff` windows, twice as many each time
                skip, backoff = backoff, min(2 * backoff, MAX_BACKOFF)
            else:
                backoff = 1
        elif skip:
            skip -= 1
        if found is not None:
            steps += found.steps
            if ends is None:
                return Outcome(valid=True, steps=steps, max_configs=peak)
            carried = _carry_out(model, wops, {found.state: [found.used]},
                                 later.seen_from(w + 1), effect, later_observes, exact=False)
            if steps >= budget:  # a key decided by paths still lets the others run
                budget = steps + YIELD_EVERY
                if progress is not None:
                    progress.update(window=_span(part), steps=steps, configs=peak)
                yield
            continue
        seen = observed(model, wops)
        out = yield from search(model, wops, max_configs, progress, starts=starts, ends=ends,
                                observed=seen)
        steps += out.steps
        peak = max(peak, out.max_configs)
        if out.valid is not True:
            if not carried.exact:  # not decided from every state: the exact search decides
                if carry is None or carry.exact:  # redo this key from where it began
                    again = yield from check_key(model, ops, max_configs, progress, carry,
                                                 collect, min_ops, later_observes, paths=False)
                    again.steps += steps
                    again.max_configs = max(again.max_configs, peak)
                    return again
                return Outcome(valid="unknown", steps=steps, max_configs=peak,
                               window=_span(part), reason=REDO_EXACT)
            out.steps, out.max_configs, out.ops = steps, peak, wops
            if out.valid != False:  # noqa: E712
                out.window = _span(part)
            return out
        if ends is None:
            return Outcome(valid=True, steps=steps, max_configs=peak)
        carried = _carry_out(model, wops, ends, later.seen_from(w + 1), effect,
                             later_observes, exact=carried.exact)
        if len(carried.ends) > MAX_CARRY:
            return Outcome(valid="unknown", steps=steps, max_configs=peak, window=_span(part),
                           reason=f"more than {MAX_CARRY} possible states at a cut")
    return Outcome(valid=True, steps=steps, max_configs=peak, carry=carried)


def _span(part: list[SearchOp]) -> tuple[int, int]:
    """The time window of a window's ops: first invoke, last completion."""
    return part[0].invoke_time, max(o.complete_time for o in part)


class _Later:
    """Which values the windows from some window on observe (to drop carried unknown ops
    nobody can see): for each value the last window observing it, and the last window whose
    ops may observe anything (`observers` None). One pass over the windows, where a set per
    window of all the values observed from there on cost time and memory quadratic in the
    windows of a key (most of the windowed search's own time on a 100,000-op piece).

    A window's values are one C-level union over its ops' `Model.observes`; only when that
    raises (an op may observe anything: None; the model cannot tell; an unhashable value)
    is the window asked op by op (`observers`). The search asks again for the few windows
    no witness path decides (`observed`), so nothing per op is kept here."""

    def __init__(self, model: Model, parts: list[list[SearchOp]]):
        self.last: dict[Any, int] = {}
        self.anything = -1  # windows up to here may observe anything
        observes = model.observes
        for w, part in enumerate(parts):
            got: set[Any] | None
            try:
                got = set().union(*map(observes, map(_INP, part), map(_OUT, part)))
            except TypeError:
                got = observers(model, part)
            if got is None:
                self.anything = w
            else:
                self.last.update(dict.fromkeys(got, w))

    def seen_from(self, w: int) -> Callable[[Any], bool] | None:
        """Whether window `w` or a later one observes a value; None: one may observe any."""
        if w <= self.anything:
            return None
        last = self.last
        return lambda value: last.get(value, -1) >= w


def _carry_out(model: Model, wops: list[SearchOp], ends: dict[Any, list[int]],
               seen_after: Callable[[Any], bool] | None,
               effect: Callable[[Any], Any] | None,
               later_observes: Callable[[Any], bool] | None, exact: bool = True) -> Carried:
    """The carry out of a window from its ends: unknown ops still unused, those that nothing
    later can observe dropped, ends covered by another (same state, more ops unused) dropped.
    `exact`: whether `ends` are all the window's ends from all the states it could start in
    (Carried.exact)."""
    unknown = [j for j, op in enumerate(wops) if not op.due]
    keep: set[int] = set()
    if unknown:
        # carried unknown ops may themselves observe (an unknown cas expecting a)
        seen = observers(model, [wops[j] for j in unknown])
        for j in unknown:
            op = wops[j]
            if effect is None or seen is None or seen_after is None:
                keep.add(j)
                continue
            try:
                value = effect(op.inp)
                visible = (value in seen or seen_after(value)
                           or (later_observes is not None and later_observes(value)))
            except TypeError:
                visible = True
            if visible:
                keep.add(j)
    out: dict[Any, list[frozenset[int]]] = {}
    for state, useds in ends.items():
        for used in useds:
            avail = frozenset(wops[j].index for j in keep if not used & (1 << j))
            group = out.setdefault(state, [])
            if any(avail <= a for a in group):
                continue
            group[:] = [a for a in group if not a < avail] + [avail]
    kept = {wops[j].index: wops[j] for j in keep}
    return Carried([(s, a) for s, group in out.items() for a in group], kept, exact)
