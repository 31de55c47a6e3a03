"""Linearizability search for one key: Wing & Gong / Lowe, depth-first and just in time.

A *configuration* is (k, model state, bitset of ops linearized but not yet returned): k counts
the return events passed, in real-time order. Bitsets are Python ints. The search starts at
k = 0 and must reach the end of the history; from a configuration waiting at the return of op
`o`, a move linearizes one pending op (any invoked, not yet linearized op: `o` itself, another
pending op, or an op with unknown outcome); once `o` is linearized the configuration passes
its return (Lowe's just-in-time linearization: nothing is forced before a return needs it).
Every configuration is memoised the first time it is seen (Wing & Gong / Lowe's cache), so two
orders that reach the same state with the same ops done are explored once. Depth-first, with
pending ops tried in invoke order (as Porcupine does), a valid history is usually confirmed on
the first path; an invalid one exhausts the memo, and the deepest return ever reached names
the op that cannot be linearized, with the longest linearizable prefix that led there.

Pruning, each sound for the reason given:

- read-only ops (reads, failed compares) are linearized the moment they are legal: they
  change nothing, so moving them earlier inside their own interval never hurts;
- an unknown-outcome op whose step would leave the state unchanged is never tried: the
  configuration without it may still use it later or never, so it covers the one with it
  (not so for an op that returned: it must take effect at some point, and later differs);
- ops whose outcome is unknown (`info`, never returned) may take effect at any time after
  their invoke or never; equal ones (same input) are interchangeable, so only the earliest
  unused one of each kind is tried, and a configuration that used a subset of another's
  unknown ops (same k, state and other ops) covers it: the larger one is skipped.

The search is a generator that yields every few thousand model steps so a scheduler can share
time fairly between keys, and gives up (undecided) past a memory cap on configurations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

from chaos.checkers.linearizable.models import Model

YIELD_EVERY = 4000  # model steps between yields to the scheduler


@dataclass(frozen=True)
class SearchOp:
    """One operation of a key as the search sees it.

    due:   True when the op returned (ok, or a fail the model observes): it must be
           linearized between `invoke_time` and `complete_time`. False for unknown outcome
           (info / never completed): it may be linearized after its invoke, or never.
    index: the invoke line's `index` in the history; `complete_index` the completion's (-1).
    key:   the op's key (what the default partition groups by).
    """

    inp: tuple[str, Any]
    out: Any
    due: bool
    invoke_time: int
    complete_time: int
    index: int
    complete_index: int
    read_only: bool
    key: Any = None

    @classmethod
    def fast(cls, inp: tuple[str, Any], out: Any, due: bool, invoke_time: int,
             complete_time: int, index: int, complete_index: int, read_only: bool,
             key: Any) -> "SearchOp":
        """The op the constructor makes, built without the frozen dataclass's nine
        object.__setattr__ calls: the checker builds one per op of a history, and that
        cost ~3 us an op, a third of reading a register history's op into the search."""
        op = _new(cls)
        _setattr(op, "__dict__", {
            "inp": inp, "out": out, "due": due, "invoke_time": invoke_time,
            "complete_time": complete_time, "index": index, "complete_index": complete_index,
            "read_only": read_only, "key": key})
        return op


_new = object.__new__
_setattr = object.__setattr__


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
    ops: list[SearchOp] | None = None  # the ops positions refer to, when not the key's own
    carry: Any = None  # where a key checked in windows ends (windows.Carried)


def _path_list(path: Any) -> list[int]:
    out: list[int] = []
    while path is not None:
        out.append(path[0])
        path = path[1]
    out.reverse()
    return out


def search(model: Model, ops: list[SearchOp], max_configs: int = 1_000_000,
           progress: dict[str, Any] | None = None,
           starts: list[tuple[Any, int]] | None = None,
           ends: dict[Any, list[int]] | None = None) -> Generator[None, None, Outcome]:
    """Decide whether `ops` (one key) are linearizable w.r.t. `model`; see the module doc.

    A generator: drive it with next() until StopIteration, whose value is the Outcome.
    `max_configs` caps the memoised configurations (memory budget). Before each yield,
    `progress["window"]` is set to the (first, last) time not yet known to be linearizable,
    so a caller that stops the search can say which window stayed undecided.

    For a history checked window by window (chaos.checkers.linearizable.windows):
    `starts` are the initial configurations, (model state, bitset of the unknown-outcome ops
    already used before this window) instead of (init, nothing used); with `ends` (a dict)
    the search does not stop at the first path that reaches the end: it explores every
    configuration and records each end it reaches as ends[state] = [bitsets of unknown ops
    used], so the caller knows every state the window can leave (valid True iff any).
    """
    step = model.step
    plan = _plan(ops)
    returns, segments, pend_upd, pend_ro = plan.returns, plan.segments, plan.pend_upd, plan.pend_ro
    kinds, seq, n_unknown = plan.kinds, plan.seq, plan.n_unknown
    n_ret = len(returns)
    reachable = model.reachable
    reach: Callable[..., bool] = reachable or (lambda *_: True)  # only called when set
    ret_pos = {i: k for k, i in enumerate(returns)}
    resetters = _resetters(model, ops) if reachable is not None else {}

    def dead(k: int, s: Any, m: int) -> int:
        """A pending read no sequence of updates can satisfy any more (model hint), or -1."""
        for j in pend_ro[k]:
            if m & (1 << j):
                continue
            o = ops[j]
            if reach(s, o.inp, o.out, ()):
                continue
            resets = [ops[u].inp for u in resetters[j]
                      if not m & (1 << u) and (not ops[u].due or ret_pos[u] >= k)]
            if not resets or not reach(s, o.inp, o.out, resets):
                return j
        return -1

    unknown_all = 0
    for i, op in enumerate(ops):
        if not op.due:
            unknown_all |= 1 << i
    pick = _UnknownPicker(model, ops, plan) if unknown_all else None

    def enter(k: int, s: Any, m: int, path: Any) -> tuple[int, int, Any]:
        """Pass the returns whose op is linearized; on the way, linearize the read-only ops
        invoked before the next return if they are legal (greedy, see the module doc)."""
        while k < n_ret and m & (1 << returns[k]):
            m &= ~(1 << returns[k])
            k += 1
            for j in segments[k]:
                o = ops[j]
                if step(s, o.inp, o.out)[0]:
                    m |= 1 << j
                    path = (j, path, path[2] + 1 if path else 1)
        return k, m, path

    def saturate(k: int, s: Any, m: int, path: Any) -> tuple[int, Any]:
        """Linearize every pending read-only op that is legal in `s`."""
        for j in pend_ro[k]:
            b = 1 << j
            if not m & b:
                o = ops[j]
                if step(s, o.inp, o.out)[0]:
                    m |= b
                    path = (j, path, path[2] + 1 if path else 1)
        return m, path

    stack: list[tuple[int, Any, int, Any]] = []
    for s0, used0 in reversed(starts if starts is not None else [(model.init(), 0)]):
        m0, p0 = saturate(0, s0, used0, None)  # read-only ops invoked before the first return
        k0, m0, p0 = enter(0, s0, m0, p0)
        stack.append((k0, s0, m0, p0))
    s0 = stack[-1][1] if stack else model.init()
    visited: dict[tuple[int, Any, int], list[int]] = {}  # (k, state, due ops) -> unknowns used
    seen: set[tuple[int, Any, int]] = set()  # the same, when there are no unknown ops
    n_visited = 0
    steps = 0
    budget = YIELD_EVERY
    deepest: tuple[int, Any, Any, int] = (-1, s0, None, -1)
    while stack:
        k, s, m, path = stack.pop()
        if k == n_ret:
            if ends is None:
                return Outcome(valid=True, steps=steps, max_configs=n_visited)
            used = m & unknown_all
            group_end = ends.setdefault(s, [])
            if not any(u & ~used == 0 for u in group_end):
                group_end.append(used)  # not covered by an end that used fewer unknown ops
            continue
        if unknown_all:
            used = m & unknown_all
            group = visited.setdefault((k, s, m & ~unknown_all), [])
            if any(u & ~used == 0 for u in group):
                continue  # this configuration, or one that used fewer unknown ops, was done
            group.append(used)
        else:
            node = (k, s, m)
            if node in seen:
                continue
            seen.add(node)
        n_visited += 1
        culprit = dead(k, s, m) if reachable is not None else -1
        if k >= deepest[0] and (k > deepest[0] or _plen(path) > _plen(deepest[2])):
            deepest = (k, s, path, culprit)
        if culprit >= 0:
            continue
        target = returns[k]
        children: list[tuple[int, Any, int, Any]] = []
        cands = [j for j in pend_upd[k] if not m & (1 << j)]
        if target not in cands and not m & (1 << target):
            cands.append(target)  # a read-only target: it needs a state change first
        if pick is not None:
            cands += pick.candidates(k, m)
        for j in cands:
            op = ops[j]
            legal, s2 = step(s, op.inp, op.out)
            steps += 1
            if not legal or (s2 == s and not op.due):
                continue
            m2 = m | (1 << j)
            path2 = (j, path, path[2] + 1 if path else 1)
            if s2 != s:
                m2, path2 = saturate(k, s2, m2, path2)
            k2, m2, path2 = enter(k, s2, m2, path2)
            children.append((k2, s2, m2, path2))
        children.reverse()  # popped in invoke order (Porcupine's order)
        stack.extend(children)
        if steps >= budget:
            budget = steps + YIELD_EVERY
            op = ops[returns[deepest[0]]]
            window = (op.invoke_time, ops[returns[-1]].complete_time)
            if n_visited > max_configs:
                return Outcome(valid="unknown", steps=steps, max_configs=n_visited,
                               reason=f"memory cap of {max_configs} configurations reached",
                               window=window, time=op.complete_time)
            if progress is not None:
                progress.update(window=window, steps=steps, configs=n_visited)
            yield
    if ends:
        return Outcome(valid=True, steps=steps, max_configs=n_visited)
    k, s, path, culprit = deepest
    stuck = culprit if culprit >= 0 else returns[k]
    done = set(_path_list(path))
    pending = sorted(j for j in pend_upd[k] + pend_ro[k] if j != stuck and j not in done)
    pending += sorted(j for members in kinds for j in members
                      if seq[j] < n_unknown[k] and j not in done)
    return Outcome(valid=False, steps=steps, max_configs=n_visited, stuck_on=stuck,
                   linearized=_path_list(path), pending=pending, state=s,
                   time=ops[stuck].complete_time)


def _resetters(model: Model, ops: list[SearchOp]) -> dict[int, list[int]]:
    """For each due read-only op: the resetting updates invoked before it returns."""
    resets = [i for i, op in enumerate(ops) if not op.read_only and model.resets(op.inp)]
    return {j: [u for u in resets if ops[u].invoke_time <= op.complete_time]
            for j, op in enumerate(ops) if op.due and op.read_only}


def _plen(path: Any) -> int:
    return path[2] if path else 0


class _UnknownPicker:
    """Which unknown-outcome ops to try at a configuration.

    Equal unknown ops (same input) are interchangeable: only the earliest unused one of each
    kind is tried. With a model that tells what an unknown update leaves (`unknown_effect`)
    and what ops can see (`observes`), a kind is tried only when its value is observed by a
    pending due op, or by some unknown op (a chain of unknown ops), or when a pending op may
    observe anything: an effect nobody observes before it is overwritten never mattered.
    """

    def __init__(self, model: Model, ops: list[SearchOp], plan: Plan):
        self.ops, self.plan = ops, plan
        self.kinds, self.seq, self.n_unknown = plan.kinds, plan.seq, plan.n_unknown
        self.filtered = model.unknown_effect is not None
        if not self.filtered:
            return
        assert model.unknown_effect is not None
        static: set[Any] = set()
        self.observed: dict[int, Any] = {}
        try:
            for j, op in enumerate(ops):
                seen = model.observes(op.inp, op.out)
                if not op.due:
                    if seen is None:
                        raise TypeError("an unknown op may observe anything")
                    static.update(seen)
                else:
                    self.observed[j] = None if seen is None else frozenset(seen)
            self.always: list[int] = []
            self.by_value: dict[Any, list[int]] = {}
            for n, members in enumerate(self.kinds):
                value = model.unknown_effect(ops[members[0]].inp)
                if value in static:
                    self.always.append(n)
                else:
                    self.by_value.setdefault(value, []).append(n)
        except TypeError:  # unhashable values, or no way to tell: try every kind
            self.filtered = False

    def candidates(self, k: int, m: int) -> list[int]:
        limit = self.n_unknown[k]
        if limit == 0:
            return []
        kinds: Sequence[int] = range(len(self.kinds))
        if self.filtered:
            values: set[Any] = set()
            for j in self.plan.pend_upd[k] + self.plan.pend_ro[k]:
                if not m & (1 << j):
                    seen = self.observed[j]
                    if seen is None:
                        break
                    values |= seen
            else:
                chosen = list(self.always)
                for v in values:
                    chosen += self.by_value.get(v, ())
                kinds = sorted(chosen)  # first-invoke order, so the loop below can stop early
        out: list[int] = []
        seq = self.seq
        for n in kinds:
            members = self.kinds[n]
            if seq[members[0]] >= limit:
                break
            for j in members:
                if seq[j] >= limit:
                    break
                if not m & (1 << j):
                    out.append(j)
                    break
        return out


@dataclass
class Plan:
    """What is pending at each return (in real-time order), precomputed once per key.

    returns[k]:  the op whose return is the k-th return event
    segments[k]: due read-only ops invoked after return k-1 and before return k
    pend_upd[k], pend_ro[k]: due updating / read-only ops invoked and not returned before
                 return k (including returns[k] itself)
    kinds:       unknown-outcome ops grouped by input, each group in invoke order, groups
                 ordered by their first invoke; seq[j] is op j's rank among unknown invokes
    n_unknown[k]: how many unknown-outcome ops were invoked before return k
    Index k = len(returns) describes the end of the history.
    """

    returns: list[int]
    segments: list[list[int]]
    pend_upd: list[list[int]]
    pend_ro: list[list[int]]
    kinds: list[list[int]]
    seq: list[int]
    n_unknown: list[int]


def _plan(ops: list[SearchOp]) -> Plan:
    """Walk the invoke and return events once and record what each return sees."""
    events: list[tuple[int, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.invoke_time, 0, i))
        if op.due:
            events.append((op.complete_time, 1, i))
    events.sort()  # at equal times invokes come first: closed intervals, the permissive order
    plan = Plan([], [[]], [], [], [], [len(ops)] * len(ops), [])
    upd: list[int] = []
    ro: list[int] = []
    by_kind: dict[Any, list[int]] = {}
    n_unknown = 0
    for _t, kind, i in events:
        op = ops[i]
        if kind == 0:
            if not op.due:
                plan.seq[i] = n_unknown
                n_unknown += 1
                members = by_kind.get(op.inp)
                if members is None:
                    members = by_kind[op.inp] = []
                    plan.kinds.append(members)
                members.append(i)
            elif op.read_only:
                ro.append(i)
                plan.segments[-1].append(i)
            else:
                upd.append(i)
            continue
        plan.returns.append(i)
        plan.pend_upd.append(list(upd))
        plan.pend_ro.append(list(ro))
        plan.n_unknown.append(n_unknown)
        plan.segments.append([])
        (ro if op.read_only else upd).remove(i)
    plan.pend_upd.append(list(upd))
    plan.pend_ro.append(list(ro))
    plan.n_unknown.append(n_unknown)
    return plan
