"""Sequential specifications for the linearizability checker (Porcupine-style models).

A model is a frozen dataclass of pure functions. The search only ever calls `step`, so a model
must never mutate a state: states are hashable values (None, ints, strings, tuples) because
the search memoises on them.

Inputs and outputs of one operation, as the search hands them to a model:

- ``inp`` is ``(f, value)``: the op's function name and its invoke value, frozen (lists become
  tuples, so ``[1, 2]`` for a cas arrives as ``(1, 2)``).
- ``out`` is the completion's value for an ``ok`` op, ``UNKNOWN`` for an op whose outcome is
  unknown (``info``: it may have taken effect or not), or ``FAILED`` for a ``fail`` that the
  model observes (a cas whose compare failed: see `Model.observes_fail`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Sequence

from chaos.checkers._frame import hashable


class _Sentinel:
    """A named singleton output marker (prints as its name in counterexamples)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN: Any = _Sentinel("UNKNOWN")  # output of an op whose outcome is unknown (info)
FAILED: Any = _Sentinel("FAILED")    # output of an observed fail (compare of a cas failed)

State = Hashable
Input = tuple[str, Any]
StepFn = Callable[[State, Input, Any], tuple[bool, State]]


#: Make a JSON value hashable: lists become tuples, dicts sorted item tuples.
freeze = hashable


def _never(inp: Input, out: Any) -> bool:
    return False


def _describe_op(inp: Input, out: Any) -> str:
    f, value = inp
    shown = "" if value is None else f" {value!r}"
    if out is UNKNOWN:
        return f"{f}{shown} -> ?"
    if out is FAILED:
        return f"{f}{shown} -> failed"
    return f"{f}{shown} -> {out!r}"


@dataclass(frozen=True)
class Model:
    """A sequential object: `init()` gives the first state; `step` is the whole semantics.

    step(state, inp, out) -> (legal, new_state): is `out` a legal answer to `inp` in `state`,
        and which state follows. Must be pure and deterministic.
    read_only(inp, out) -> bool: True when the op can never change the state when it is legal
        (a read, a failed compare). The search linearizes such ops greedily, the moment they
        are legal, which is sound precisely because they have no effect; an `info` op that is
        read-only is dropped (unknown output and no effect: it constrains nothing).
    observes_fail(inp) -> bool: whether a `fail` of this op is an observation (checked with
        out=FAILED) under the checker's fail mode; by DESIGN §4 a fail otherwise "did not happen".
    describe_op / describe_state: text for counterexamples.
    reachable(state, inp, out, resets) -> bool, optional pruning: False only when the
        read-only op (inp, out) can never become legal from `state`, given that the only
        resetting updates that may still come first have inputs `resets` (all other updates
        are non-resetting). E.g. kv: appends only extend the string, so a get of S needs
        `state`, or a possible put's value, to be a prefix of S. The search drops a
        configuration with such a pending read. Must never be wrong.
    resets(inp) -> bool: an update that may set the state to anything (kv put, a write).
    unobserved(ops) -> set of positions, optional: unknown-outcome ops of one group that can
        be left out because, had they taken effect, nothing could have observed it (kept or
        not, the verdict is the same; leaving them out spares the search a branch each).
    unknown_effect(inp) -> value, optional: the state an update with unknown outcome leaves
        when it takes effect (register: the written / swapped-in value). Together with
    observes(inp, out) -> values or None: the states in which op (inp, out) could tell that
        value apart (a read of v: {v}; a cas expecting a: {a}; a write: none; None = any),
        the search tries an unknown update only when some pending op observes its value:
        taking effect unobserved and then being overwritten is the same as never happening,
        so an unknown write can always be moved to just before the op that observes it.
    read_only_test(inp, out) -> (value, equal) or None, optional: for a read-only op, a test
        that agrees with `step` on every state s: legal iff `value == s` (equal True) or iff
        `s != value` (equal False); None: ask `step`. The search runs it inline, where a
        call of `step` per pending read per change of state was a fifth of its time.
    partition(ops) -> {group name: ops}, optional: groups checked independently (each op has
        a `.key`). None = by key, which is P-compositionality for both built-in models (keys
        are independent objects); a model over a whole map would return one group.
    """

    name: str
    init: Callable[[], State]
    step: StepFn
    read_only: Callable[[Input, Any], bool] = _never
    observes_fail: Callable[[Input], bool] = lambda inp: False
    describe_op: Callable[[Input, Any], str] = _describe_op
    describe_state: Callable[[State], str] = repr
    fs: frozenset[str] = field(default_factory=frozenset)  # op names the model understands
    reachable: Callable[[State, Input, Any, Sequence[Input]], bool] | None = None
    resets: Callable[[Input], bool] = lambda inp: True
    partition: Callable[[Sequence[Any]], Mapping[Any, list[Any]]] | None = None
    unobserved: Callable[[Sequence[Any]], set[int]] | None = None
    unknown_effect: Callable[[Input], Any] | None = None
    observes: Callable[[Input, Any], Any] = lambda inp, out: None
    read_only_test: Callable[[Input, Any], tuple[Any, bool] | None] | None = None


# --- register: read / write / cas on one value; None = never written --------------------------

def _register_step(state: State, inp: Input, out: Any) -> tuple[bool, State]:
    f, value = inp
    if f == "read":
        if out is UNKNOWN:
            return True, state
        return out == state and (out is None) == (state is None), state
    if f == "write":
        return True, value
    if f == "cas":
        expected, new = value
        if out is FAILED:
            return state != expected or (state is None) != (expected is None), state
        if out is UNKNOWN:
            return True, (new if state == expected else state)
        return state == expected and (state is None) == (expected is None), new
    return False, state


def _register_read_only(inp: Input, out: Any) -> bool:
    return inp[0] == "read" or (inp[0] == "cas" and out is FAILED)


def _register_unobserved(ops: Sequence[Any]) -> set[int]:
    """Unknown writes / cas whose new value no read returned and no cas expected.

    Had such a write of v taken effect, the register held v until the next update, and no op
    in between can exist: a read there returns v (none does), an ok cas there expects v (none
    does), an unknown cas there would be a no-op (it may as well not be linearized). So
    leaving it out never turns a linearizable history into a non-linearizable one, and never
    the reverse. A failed compare would observe "not A", so with observed fails present
    nothing is left out.
    """
    seen: set[Any] = set()
    unknown: list[int] = []
    for n, op in enumerate(ops):  # one pass over all ops, the second only over unknown ones
        f, value = op.inp
        if f == "cas":
            if op.out is FAILED:
                return set()
            seen.add(value[0])
        elif f == "read" and op.due:
            seen.add(op.out)
        if not op.due:
            unknown.append(n)
    out: set[int] = set()
    for n in unknown:
        f, value = ops[n].inp
        new = value if f == "write" else value[1] if f == "cas" else None
        if f in ("write", "cas") and not _hashable_in(new, seen):
            out.add(n)
    return out


def _hashable_in(value: Any, seen: set[Any]) -> bool:
    try:
        return value in seen
    except TypeError:
        return True  # cannot tell: keep the op


def _register_effect(inp: Input) -> Any:
    f, value = inp
    return value if f == "write" else value[1]


def _register_observes(inp: Input, out: Any) -> Any:
    f, value = inp
    if f == "read":
        return (out,)
    if f == "cas":
        return None if out is FAILED else (value[0],)  # a failed compare sees "not a"
    return ()


#: types whose == and != with any state are what the register's step compares
_COMPARED = frozenset({int, str, float, bool})


def _register_read_only_test(inp: Input, out: Any) -> tuple[Any, bool] | None:
    """A read of v (not nil) is legal exactly in the states s with `v == s` (step: `out ==
    state`, and state not nil, which v == nil never is for these types); a failed compare
    expecting a (not nil) exactly where `s != a` (step: `state != a`, or state nil, where
    nil != a holds anyway). Nil and other values: None, step decides."""
    f, value = inp
    if f == "read":
        if out is not UNKNOWN and out is not None and type(out) in _COMPARED:
            return out, True
    elif f == "cas" and out is FAILED:
        expected = value[0]
        if expected is not None and type(expected) in _COMPARED:
            return expected, False
    return None


def _register_state(state: State) -> str:
    return "nil (never written)" if state is None else repr(state)


REGISTER = Model(
    name="register", init=lambda: None, step=_register_step, read_only=_register_read_only,
    observes_fail=lambda inp: inp[0] == "cas", describe_state=_register_state,
    fs=frozenset({"read", "write", "cas"}), unobserved=_register_unobserved,
    unknown_effect=_register_effect, observes=_register_observes,
    read_only_test=_register_read_only_test,
)
"""A read/write/cas register. A read of None matches only the never-written state; an ok cas
applies; an observed failed cas is legal only when the value differs from the expected one."""


# --- kv: get / put / append over strings, one key per partition -------------------------------

def _kv_str(value: Any) -> str:
    """kv values are strings; a missing one (None) is "" (an absent key reads as empty)."""
    return "" if value is None else value if isinstance(value, str) else str(value)


def _kv_step(state: State, inp: Input, out: Any) -> tuple[bool, State]:
    f, value = inp
    if f == "get":
        return (out is UNKNOWN or _kv_str(out) == state), state
    if f == "put":
        return True, _kv_str(value)
    if f == "append":
        return True, _kv_str(state) + _kv_str(value)
    return False, state


def _kv_reachable(state: State, inp: Input, out: Any, resets: Sequence[Input]) -> bool:
    if out is UNKNOWN or _kv_str(out).startswith(_kv_str(state)):
        return True
    return any(_kv_str(out).startswith(_kv_str(v)) for _f, v in resets)


KV = Model(
    name="kv", init=lambda: "", step=_kv_step,
    read_only=lambda inp, out: inp[0] == "get", describe_state=repr,
    fs=frozenset({"get", "put", "append"}),
    reachable=_kv_reachable, resets=lambda inp: inp[0] == "put",
)
"""Porcupine's kv model per key: initial value "", get returns the value, put sets, append
concatenates. Keys are independent (P-compositionality), so the checker searches each alone."""

MODELS: dict[str, Model] = {m.name: m for m in (REGISTER, KV)}


def pick_model(fs: set[str]) -> Model | None:
    """The model whose ops cover most of `fs` (register first on ties); None if none applies."""
    best: Model | None = None
    best_n = 0
    for model in MODELS.values():
        n = len(fs & model.fs)
        if n > best_n:
            best, best_n = model, n
    return best
