"""A witness path: one linearization of a window found without a search, when there is one
that follows the ops' completions closely.

Why: the exact search (chaos.checkers.linearizable.search) costs Python work per op, most of
it bookkeeping for configurations it could have to come back to (a plan of what is pending
at each return, memoised configurations, every end state of a window). In a valid history
nearly every window has a linearization that is the completion order, or close to it, and
finding one proves the window linearizable: a witness is a proof of validity, whatever
other orders exist. So the windowed check (chaos.checkers.linearizable.windows) tries this
first and searches only the windows it leaves.

The path: the due ops in completion order, each stepped in the state the previous ones
left. When an op is illegal there, two repairs are tried, each keeping the real-time order:

- *pull*: an update that is open at this return (invoked before it, not yet placed: a
  concurrent op that returns later, or an unknown-outcome op still available) placed just
  before the op, if the op is then legal (a read of a value whose write returns after it);
- *insert*: the op placed earlier among the last TAIL ops placed, after every op that
  returned before its invoke, and those after it stepped again (a read of the value a
  concurrent write, already placed, overwrote).

Unknown-outcome ops (info, never returned) take effect only when a pull places them: the
path leaves them unused otherwise, which is always allowed.

Why each placement respects real time (op a must precede b iff a returned before b was
invoked): completion order does; a pulled op x is placed at the return of an op o with
x invoked before that return, so nothing forces o before x, and every op that returned
before x's invoke returned before o's return and is placed already; an inserted op goes
after every placed op that returned before its invoke, and every op after it was placed no
later than its own return, so was invoked before it. The path gives up (None) rather than
search: the caller then runs the exact search on that window. A witness is never a proof
of invalidity, and the end state of one path is one of the states the window can end in,
not all of them (the caller knows its carry is then not exact).
"""
from __future__ import annotations

from itertools import compress
from operator import itemgetter
from typing import Any

from chaos.checkers.linearizable.models import Model
from chaos.checkers.linearizable.search import SearchOp

_INP, _OUT, _DUE, _T1 = (itemgetter(SearchOp._fields.index(f))
                         for f in ("inp", "out", "due", "complete_time"))

#: ops placed last that an illegal op may be inserted before
TAIL = 32


class Path:
    """A witness path found: the state it ends in, the unknown-outcome ops it used (a bitset
    by position, including those used before the window), its model steps, and the order
    (positions) the ops took."""

    __slots__ = ("state", "used", "steps", "order")

    def __init__(self, state: Any, used: int, steps: int, order: list[int]):
        self.state, self.used, self.steps, self.order = state, used, steps, order


def witness(model: Model, ops: list[SearchOp], starts: list[tuple[Any, int]]) -> Path | None:
    """A linearization of `ops` (one window: due ops and unknown-outcome ops) from one of
    `starts` ((model state, bitset of the unknown ops used before the window), as the search
    takes them), or None when this path finds none (which proves nothing)."""
    order = sorted(compress(range(len(ops)), map(_DUE, ops)),
                   key=list(map(_T1, ops)).__getitem__)
    inps, outs = list(map(_INP, ops)), list(map(_OUT, ops))
    for state, used in starts:
        got = _walk(model, ops, order, inps, outs, state, used)
        if got is not None:
            return got
    return None


def _walk(model: Model, ops: list[SearchOp], order: list[int], inps: list[Any],
          outs: list[Any], s: Any, used: int) -> Path | None:
    step = model.step
    placed: list[int] = []   # positions, in the path's order
    before: list[Any] = []   # the state before each placed op
    pulled: set[int] = set()
    steps = 0
    for j in order:
        if pulled and j in pulled:
            continue
        legal, s2 = step(s, inps[j], outs[j])
        steps += 1
        if legal:
            placed.append(j)
            before.append(s)
            s = s2
            continue
        pull = _pull(model, ops, placed, before, pulled, s, j, used)
        if pull is not None:
            s, used, n = pull
        else:
            insert = _insert(model, ops, placed, before, j)
            if insert is None:
                return None
            s, n = insert
        steps += n
    return Path(s, used, steps, placed)


def _pull(model: Model, ops: list[SearchOp], placed: list[int], before: list[Any],
          pulled: set[int], s: Any, j: int, used: int) -> tuple[Any, int, int] | None:
    """Place an open update just before op j (see the module doc); extends `placed`,
    `before` and `pulled` and returns (new state, unknown ops used, steps), or None."""
    step = model.step
    t = ops[j].complete_time
    done = set(placed)
    steps = 0
    for x, op in enumerate(ops):
        if x == j or op.read_only or op.invoke_time > t or x in done or x in pulled:
            continue
        if not op.due and used >> x & 1:
            continue  # an unknown op used already (here or before the window)
        legal, s1 = step(s, op.inp, op.out)
        steps += 1
        if not legal:
            continue
        legal, s2 = step(s1, ops[j].inp, ops[j].out)
        steps += 1
        if legal:
            placed += (x, j)
            before += (s, s1)
            pulled.add(x)
            if not op.due:
                used |= 1 << x
            return s2, used, steps
    return None


def _insert(model: Model, ops: list[SearchOp], placed: list[int], before: list[Any],
            j: int) -> tuple[Any, int] | None:
    """Place op j earlier among the last TAIL placed ops (see the module doc), stepping the
    ops after it again; updates `placed` and `before` and returns (new state, steps), or
    None."""
    step = model.step
    t0 = ops[j].invoke_time
    inp, out = ops[j].inp, ops[j].out
    steps = 0
    lowest = max(len(placed) - TAIL, 0)
    for q in range(len(placed) - 1, lowest - 1, -1):
        x = ops[placed[q]]
        if x.due and x.complete_time < t0:
            return None  # x returned before j was invoked: j cannot go before it
        legal, sj = step(before[q], inp, out)
        steps += 1
        if not legal:
            continue
        states = [sj]
        cur = sj
        for y in placed[q:]:
            ok, cur = step(cur, ops[y].inp, ops[y].out)
            steps += 1
            if not ok:
                break
            states.append(cur)
        else:
            before[q:] = [before[q]] + states[:-1]
            placed.insert(q, j)
            return cur, steps
    return None


def verify(model: Model, ops: list[SearchOp], start: tuple[Any, int], order: list[int]
           ) -> str | None:
    """Check a path independently of how it was found: every due op once, unknown ops at
    most once and not used before, real-time order, every step legal; None when it holds,
    else what breaks (for tests and for a caller that wants to be sure)."""
    s, used = start
    seen: set[int] = set()
    for j in order:
        if j in seen:
            return f"op {j} placed twice"
        seen.add(j)
        if not ops[j].due and used >> j & 1:
            return f"unknown op {j} used before the window"
    missing = [j for j, op in enumerate(ops) if op.due and j not in seen]
    if missing:
        return f"due ops not placed: {missing[:5]}"
    # real time: an op placed before one that returned before it was invoked
    for a, ja in enumerate(order):
        if not ops[ja].due:
            continue
        for jb in order[:a]:
            if ops[jb].invoke_time > ops[ja].complete_time:
                return f"op {jb} placed before op {ja}, which returned before it was invoked"
    for j in order:
        legal, s = model.step(s, ops[j].inp, ops[j].out)
        if not legal:
            return f"op {j} illegal in its place"
    return None
