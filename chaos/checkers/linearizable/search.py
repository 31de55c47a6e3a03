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

Implementation: a window's search costs Python overhead per op more than model steps (about
one step per op), so the inner loop only indexes lists by op position (chaos.checkers.
linearizable.plan: the ops' fields as columns, `bits[j]` = 1 << j) and the moves (linearize
one op, then the read-only ops it makes legal, then pass the returns) are written out in it
rather than called. One step is counted, not taken: a pending read-only op that is not
linearized was found illegal in the configuration's state (every read-only op is tried when
it becomes pending, in the start state or as the search passes the return before its invoke,
and again after every change of state), and steps are pure, so a read-only op
whose return is next is counted as a step (the `steps` statistic stays what it was) but not
stepped again: it can only wait for an update. A read-only op is tested inline when the model
says how (Model.read_only_test: legal iff its value == the state, or != it; the register's
read and failed compare), else with `step`. The first child of a configuration is visited
next without going through the stack (the others are pushed in reverse, as before): the
same order, one tuple and a push and pop fewer per configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, NamedTuple

from chaos.checkers.linearizable.models import Model
from chaos.checkers.linearizable.plan import Plan, UnknownPicker, bits, make_plan

YIELD_EVERY = 4000  # model steps between yields to the scheduler


class SearchOp(NamedTuple):
    """One operation of a key as the search sees it.

    due:   True when the op returned (ok, or a fail the model observes): it must be
           linearized between `invoke_time` and `complete_time`. False for unknown outcome
           (info / never completed): it may be linearized after its invoke, or never.
    index: the invoke line's `index` in the history; `complete_index` the completion's (-1).
    key:   the op's key (what the default partition groups by).

    A named tuple, not a dataclass: the checker builds one per op of a history, and a tuple
    is built in a quarter of the time (`tuple.__new__(SearchOp, fields)`, ~0.25 us), and the
    search reads a window's ops as columns with one `zip(*ops)` (chaos.checkers.linearizable.
    plan).
    """

    inp: tuple[str, Any]
    out: Any
    due: bool
    invoke_time: int
    complete_time: int
    index: int  # type: ignore[assignment]  # the field shadows tuple.index (never called)
    complete_index: int
    read_only: bool
    key: Any = None


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


def _covered(group: list[int], used: int) -> bool:
    """Whether some bitset of `group` is a subset of `used`."""
    for u in group:
        if u & used == u:
            return True
    return False
def search(model: Model, ops: list[SearchOp], max_configs: int = 1_000_000,
           progress: dict[str, Any] | None = None,
           starts: list[tuple[Any, int]] | None = None,
           ends: dict[Any, list[int]] | None = None,
           observed: list[Any] | None = None) -> Generator[None, None, Outcome]:
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
    `observed`: model.observes of each op, by position, if the caller has it already.
    """
    step = model.step
    plan = make_plan(ops, model.read_only_test)
    returns, segments, pend_upd, pend_ro = plan.returns, plan.segments, plan.pend_upd, plan.pend_ro
    ro_target, inps, outs, dues = plan.ro_target, plan.inps, plan.outs, plan.dues
    n_ret = len(returns)
    bit = bits(len(ops))
    ret_bits = [bit[r] for r in returns]
    dead = _dead_ops(model, ops, plan)
    unknown_all = 0
    for members in plan.kinds:  # every unknown-outcome op, in a kind
        for i in members:
            unknown_all |= bit[i]
    pick = UnknownPicker(model, plan, observed) if unknown_all else None
    ro_kind, ro_value = plan.ro_kind, plan.ro_value  # how a read-only op is tested

    stack: list[tuple[int, Any, int, Any]] = []
    for s0, used0 in reversed(starts if starts is not None else [(model.init(), 0)]):
        stack.append(_start(step, plan, s0, used0))
    s0 = stack[-1][1] if stack else model.init()
    visited: dict[tuple[int, Any, int], list[int]] = {}  # (k, state, due ops) -> unknowns used
    seen: set[tuple[int, Any, int]] = set()  # the same, when there are no unknown ops
    n_visited = 0
    steps = 0
    budget = YIELD_EVERY
    # the deepest configuration seen: (k, state, path, length of path, culprit)
    deep_k, deep_s, deep_path, deep_len, deep_culprit = -1, s0, None, 0, -1
    pop, push = stack.pop, stack.append
    k, s, m, path = 0, s0, 0, None
    # the configuration to visit next when it is the first child of the one just visited
    # (not pushed and popped: the same order as through the stack)
    follow = False
    f_s: Any = None
    f_m = 0
    f_path: Any = None
    while True:
        if follow:
            follow = False
        elif stack:
            k, s, m, path = pop()
        else:
            break
        if k == n_ret:
            if ends is None:
                return Outcome(valid=True, steps=steps, max_configs=n_visited)
            used = m & unknown_all
            group_end = ends.get(s)
            if group_end is None:
                ends[s] = [used]
            elif not _covered(group_end, used):
                group_end.append(used)  # not covered by an end that used fewer unknown ops
            continue
        if unknown_all:
            used = m & unknown_all
            node = (k, s, m ^ used)
            group = visited.get(node)
            if group is None:
                visited[node] = [used]
            elif _covered(group, used):
                continue  # this configuration, or one that used fewer unknown ops, was done
            else:
                group.append(used)
        else:
            n_seen = len(seen)
            seen.add((k, s, m))
            if len(seen) == n_seen:
                continue
        n_visited += 1
        culprit = dead(k, s, m) if dead is not None else -1
        if k >= deep_k:
            plen = path[2] if path else 0
            if k > deep_k or plen > deep_len:
                deep_k, deep_s, deep_path, deep_len, deep_culprit = k, s, path, plen, culprit
        if culprit >= 0:
            continue
        target = ro_target[k]
        if target >= 0 and not m & bit[target]:
            steps += 1  # a read-only target, illegal in `s` (module doc): it waits for an update
        cands = pend_upd[k]
        if pick is not None:
            more = pick.candidates(k, m)
            if more:
                cands = cands + more
        first = -1  # the first child's k, once there is one (its state, ops, path in f_*)
        base = len(stack)
        for j in cands:
            b = bit[j]
            if m & b:
                continue
            legal, s2 = step(s, inps[j], outs[j])
            steps += 1
            if not legal:
                continue
            if s2 == s:
                if not dues[j]:
                    continue  # an unknown op that changes nothing: never needed (module doc)
                m2 = m | b
                path2 = (j, path, path[2] + 1 if path else 1)
            else:  # linearize every pending read-only op now legal (greedy: module doc)
                m2 = m | b
                path2 = (j, path, path[2] + 1 if path else 1)
                for r in pend_ro[k]:
                    b = bit[r]
                    if m2 & b:
                        continue
                    t = ro_kind[r]
                    if (ro_value[r] == s2 if t == 1 else s2 != ro_value[r] if t == 2
                            else step(s2, inps[r], outs[r])[0]):
                        m2 |= b
                        path2 = (r, path2, path2[2] + 1)
            k2 = k
            while k2 < n_ret:  # pass the returns whose op is linearized
                b = ret_bits[k2]
                if not m2 & b:
                    break
                m2 ^= b
                k2 += 1
                for r in segments[k2]:  # read-only ops invoked before the next return
                    t = ro_kind[r]
                    if (ro_value[r] == s2 if t == 1 else s2 != ro_value[r] if t == 2
                            else step(s2, inps[r], outs[r])[0]):
                        m2 |= bit[r]
                        path2 = (r, path2, path2[2] + 1)
            if first < 0:
                first, f_s, f_m, f_path = k2, s2, m2, path2
            else:
                push((k2, s2, m2, path2))
        if len(stack) - base > 1:
            stack[base:] = stack[base:][::-1]  # popped in invoke order (Porcupine's order)
        if first >= 0:
            k, s, m, path, follow = first, f_s, f_m, f_path, True
        if steps >= budget:
            budget = steps + YIELD_EVERY
            op = ops[returns[deep_k]]
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
    stuck = deep_culprit if deep_culprit >= 0 else returns[deep_k]
    done = set(_path_list(deep_path))
    pending = sorted(j for j in pend_upd[deep_k] + pend_ro[deep_k]
                     if j != stuck and j not in done)
    pending += sorted(j for members in plan.kinds for j in members
                      if plan.seq[j] < plan.n_unknown[deep_k] and j not in done)
    return Outcome(valid=False, steps=steps, max_configs=n_visited, stuck_on=stuck,
                   linearized=_path_list(deep_path), pending=pending, state=deep_s,
                   time=ops[stuck].complete_time)


def _start(step: Any, plan: Plan, s: Any, m: int) -> tuple[int, Any, int, Any]:
    """The configuration a start (state, unknown ops used) begins in: the read-only ops
    invoked before the first return linearized if legal, then the returns passed whose op is
    linearized, with the read-only ops invoked before each next return (greedy, module doc)."""
    bit = bits(len(plan.seq))
    inps, outs = plan.inps, plan.outs
    path: Any = None
    for j in plan.pend_ro[0]:
        if not m & bit[j] and step(s, inps[j], outs[j])[0]:
            m |= bit[j]
            path = (j, path, path[2] + 1 if path else 1)
    k = 0
    returns = plan.returns
    while k < len(returns) and m & bit[returns[k]]:
        m ^= bit[returns[k]]
        k += 1
        for j in plan.segments[k]:
            if step(s, inps[j], outs[j])[0]:
                m |= bit[j]
                path = (j, path, path[2] + 1 if path else 1)
    return k, s, m, path


def _dead_ops(model: Model, ops: list[SearchOp], plan: Plan) -> Any:
    """With a model that can tell (`reachable`): dead(k, s, m), a pending read no sequence
    of updates can satisfy any more, or -1. None without `reachable`."""
    reach = model.reachable
    if reach is None:
        return None
    ret_pos = {i: k for k, i in enumerate(plan.returns)}
    resetters = _resetters(model, ops)
    pend_ro = plan.pend_ro

    def dead(k: int, s: Any, m: int) -> int:
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
    return dead


def _resetters(model: Model, ops: list[SearchOp]) -> dict[int, list[int]]:
    """For each due read-only op: the resetting updates invoked before it returns."""
    resets = [i for i, op in enumerate(ops) if not op.read_only and model.resets(op.inp)]
    return {j: [u for u in resets if ops[u].invoke_time <= op.complete_time]
            for j, op in enumerate(ops) if op.due and op.read_only}
