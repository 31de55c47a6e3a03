"""The linearizability checker: per-key search, fair scheduling, budget, counterexamples.

Options read from `opts` (all optional):

    model        "register" | "kv" (or a Model object): the sequential model; default picked
                 from the ops (read/write/cas -> register, get/put/append -> kv).
    fail         "auto" (default) | "ignore" | "observe": what a `fail` completion means.
                 DESIGN §4: fail = did not happen ("ignore"). "observe": a fail the model can
                 observe (a cas: the compare failed) is checked as an answer. "auto": observe
                 exactly the fails tagged error="compare-failed" (as the Porcupine importer
                 tags `:fail :cas`, matching Porcupine's verdicts), ignore all others.
    time_limit   seconds for the whole check (default 60); undecided keys -> "unknown".
    max_configs  memory cap: configurations memoised (default 1,000,000; about 400 bytes
                 each), for all keys searched at the same time: past it, the key holding
                 the most is given up as undecided.
    window_ops   a key is searched window by window, cut at its quiescent points once a
                 window holds this many ops (default 200; 0: each key whole). The verdict
                 is the same either way (chaos.checkers.linearizable.windows).
    paths        try a witness path on each window before searching it (default True;
                 chaos.checkers.linearizable.witness): the same verdict, far fewer steps on
                 a valid history. With carry, a key whose later piece fails from a path's
                 carry is reported undecided with reason windows.REDO_EXACT: the caller
                 checks its pieces again with paths False.
    carry        for a key split into pieces checked one after another (chaos.checkers.
                 sharded): a dict key -> `Carried` that each key starts from (absent: the
                 initial state) and that the check replaces with where the key ends.
    later_observes  with carry: a callable (key, value) -> bool, whether a later piece may
                 observe the effect `value` of an unknown op (default: assume it may).
    continues    with carry: a callable key -> bool, whether the key has a later piece
                 (default: assume it has). A key is counted in stats["keys"] in its first
                 piece, in "keys_valid" in its last; a key undecided in one piece is
                 undecided in the next (its carry is None).
    piece_keys   with carry: the keys that have a piece here (a last piece may hold none of
                 the model's ops: its key is then counted valid here if its carry is).

P-compositionality: a history is linearizable iff each key's sub-history is, so keys are
searched independently, and each key window by window (windows.py). They are run
round-robin, smallest first, in slices of a few thousand model steps, so a key the search
finds hard cannot starve one that fails fast; the first
invalid key ends the check (the keys not finished are listed in stats["skipped_keys"]).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping

import numpy as np

from chaos.checkers._frame import register_shaped
from chaos.checkers.base import UNKNOWN, Anomaly, CheckResult
from chaos.checkers.linearizable.models import FAILED, MODELS, UNKNOWN as OUT_UNKNOWN, Model
from chaos.checkers.linearizable.models import freeze, pick_model
from chaos.checkers.linearizable.search import Outcome, SearchOp
from chaos.checkers.linearizable.windows import WINDOW_OPS, Carried, check_key
from chaos.history.model import OPEN, History, client_mask, gc_paused

ALL_FS = frozenset().union(*(m.fs for m in MODELS.values()))
DEFAULT_TIME_LIMIT = 60.0
DEFAULT_MAX_CONFIGS = 1_000_000
PREFIX_SHOWN = 50  # ops of the linearizable prefix listed in a counterexample


class LinearizableChecker:
    """Checker protocol implementation (chaos.checkers.base.Checker) named "linearizable"."""

    name = "linearizable"

    def applies(self, history: History) -> bool:
        """True when the history has client ops with f in read/write/cas or get/put/append."""
        pairs = history.pairs
        procs = pairs["process"].to_numpy()[pairs["f"].isin(ALL_FS).to_numpy()]
        if not any(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in procs):
            return False
        # kv ops (get/put/append) are always judged; read/write/cas only when register-shaped
        return bool(pairs["f"].isin(("get", "put", "append")).any()) or register_shaped(pairs)

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        """Search every key; valid True / False (with a counterexample) / "unknown".

        The cyclic garbage collector is paused meanwhile: the search allocates millions of
        small acyclic tuples (paths, memo keys), and the collector's passes over them cost
        more than the search itself (measured 2.7x on a 100k-op run).
        """
        with gc_paused():
            return self._check(history, opts)

    def _check(self, history: History, opts: Mapping[str, Any] | None) -> CheckResult:
        opts = dict(opts or {})
        rows = _client_rows(history)
        model = _choose_model(rows.fs(), opts.get("model"))
        fail_mode = opts.get("fail", "auto")
        if fail_mode not in ("auto", "ignore", "observe"):
            raise ValueError(f"fail must be auto, ignore or observe, not {fail_mode!r}")
        carry: dict[Any, Carried | None] | None = opts.get("carry")
        continues = opts.get("continues") or (lambda key: True)
        # an unknown op nobody in this piece observes may be observed in a later one
        groups, dropped = _key_ops(rows, model, fail_mode, prune=lambda key: carry is None or (
            key not in carry and not continues(key)))
        time_limit = float(opts.get("time_limit", DEFAULT_TIME_LIMIT))
        max_configs = int(opts.get("max_configs", DEFAULT_MAX_CONFIGS))
        keys = _KeyPlan(int(opts.get("window_ops", WINDOW_OPS)), carry,
                        opts.get("later_observes"), continues, bool(opts.get("paths", True)))
        carried_in = {k for k in groups if carry is not None and k in carry}
        outcomes, skipped, elapsed = _run_keys(model, groups, time_limit, max_configs, keys)
        going_on = set()
        ended = [k for k in opts.get("piece_keys", ()) if carry is not None and k not in groups
                 and carry.get(k) is not None and not continues(k)]
        if carry is not None:
            for key, out in outcomes.items():
                if continues(key):
                    carry[key] = out.carry if out.valid is True else None
                    going_on.add(key)
            for key in skipped:
                if continues(key):
                    carry[key] = None

        anomalies: list[Anomaly] = []
        warnings: list[str] = []
        undecided: list[dict[str, Any]] = []
        verdicts: list[Any] = []
        for key, out in outcomes.items():
            verdicts.append(out.valid)
            if out.valid is False:
                anomalies.append(_anomaly(model, key, out.ops or groups[key], out))
            elif out.valid != True:  # noqa: E712
                window = list(out.window) if out.window else None
                undecided.append({"key": key, "reason": out.reason, "window": window})
                warnings.append(f"key {key!r} undecided ({out.reason}) in time window {window}")
        if any(v is False for v in verdicts):
            valid: Any = False
        elif undecided or skipped:
            valid = UNKNOWN
        else:
            valid = True
        stats = {
            "model": model.name,
            "fail_mode": fail_mode,
            "keys": len(groups) - len(carried_in),
            "ops": int(sum(len(g) for g in groups.values())),
            "dropped_ops": dropped,
            "keys_valid": sum(1 for k, o in outcomes.items()
                              if o.valid is True and k not in going_on) + len(ended),
            "keys_invalid": sum(1 for o in outcomes.values() if o.valid is False),
            "undecided": undecided,
            "skipped_keys": skipped,
            "steps": int(sum(o.steps for o in outcomes.values())),
            "peak_configs": max((o.max_configs for o in outcomes.values()), default=0),
            "seconds": round(elapsed, 4),
        }
        if skipped and valid is False:
            warnings.append(f"{len(skipped)} key(s) not finished: an invalid key ended the check")
        elif skipped:
            warnings.append(f"{len(skipped)} key(s) not checked: time limit reached")
        return CheckResult(checker=self.name, valid=valid, anomalies=anomalies, stats=stats,
                           warnings=warnings)


def _choose_model(fs: set[str], name: Any) -> Model:
    if isinstance(name, Model):
        return name
    if name is not None:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
        return MODELS[name]
    return pick_model(fs) or MODELS["register"]


COLS = ("f", "key", "value", "result", "type", "invoke_time", "complete_time", "invoke_index",
        "complete_index", "error")


class Rows:
    """Client ops with a modelled f, as columns in COLS order (plain Python lists: no pandas
    per row, no numpy scalar: int columns come out as ints). Iterating gives one tuple per
    op; `_key_ops` does that straight from the columns (zip reuses its tuple), where a list
    of row tuples cost ~0.3 us an op to build and to free."""

    def __init__(self, columns: list[list[Any]]):
        self.columns = columns

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns)

    def __len__(self) -> int:
        return len(self.columns[0])

    def fs(self) -> set[str]:
        """The distinct f of the ops."""
        return set(self.columns[0])


def _client_rows(history: History) -> Rows:
    """Client ops with a modelled f (see Rows)."""
    pairs = history.pairs
    keep = client_mask(pairs["process"]) & pairs["f"].isin(ALL_FS).to_numpy()
    if keep.all():  # a shard of a register history: no copy of each column to select all
        return Rows([pairs[c].to_numpy().tolist() for c in COLS])
    return Rows([pairs[c].to_numpy()[keep].tolist() for c in COLS])


#: values `freeze` returns as they are (it only rewrites lists and dicts): tested by type
#: first, as most values of a history are one of these
_PLAIN = frozenset({int, str, float, bool, type(None)})
_NO_KEY = object()  # a key equal to no other


def _key_ops(rows: Iterable[tuple[Any, ...]], model: Model, fail_mode: str,
             prune: Callable[[Any], bool] = lambda key: True
             ) -> tuple[dict[Any, list[SearchOp]], int]:
    """Group the model's ops by key as SearchOps; drop ops that constrain nothing.

    Dropped: fails the model does not observe (they did not happen), unknown-outcome ops
    that are read-only (no effect, any answer), and (`prune`: these are all the key's ops)
    unknown ops whose effect nothing could have observed (Model.unobserved), for the keys
    `prune` says are whole here (not a piece of a longer key).

    One pass, per op only what it needs (this runs once per op of a history): a value that
    is a list of two plain values (a cas) becomes a tuple here rather than in `freeze`, and
    consecutive ops of one key are appended without a dict lookup each.
    """
    groups: dict[Any, list[SearchOp]] = {}
    partition = model.partition
    kept: list[SearchOp] = []
    dropped = 0
    fs, read_only, observes_fail = model.fs, model.read_only, model.observes_fail
    plain, new = _PLAIN, tuple.__new__
    last_key: Any = _NO_KEY
    add = kept.append
    for f, key, value, result, typ, t0, t1, i0, i1, err in rows:
        if f not in fs:
            dropped += 1
            continue
        kind = type(value)
        if kind in plain:
            inp = (f, value)
        elif (kind is list and len(value) == 2 and type(value[0]) in plain
              and type(value[1]) in plain):
            inp = (f, (value[0], value[1]))  # what freeze gives, without its call
        else:
            inp = (f, freeze(value))
        if typ == "ok":
            kind = type(result)
            if kind in plain:
                out = result
            elif (kind is list and len(result) == 2 and type(result[0]) in plain
                  and type(result[1]) in plain):
                out = (result[0], result[1])
            else:
                out = freeze(result)
            due = True
        elif typ == "fail":
            observe = observes_fail(inp) and (
                fail_mode == "observe" or (fail_mode == "auto" and err == "compare-failed"))
            if not observe:
                dropped += 1
                continue
            out, due = FAILED, True
        else:  # info, or never completed
            out, due = OUT_UNKNOWN, False
        ro = read_only(inp, out)
        if ro and not due:
            dropped += 1
            continue
        if due and t1 == OPEN:
            due = False
        if type(key) not in plain:
            key = freeze(key)
        op = new(SearchOp, (inp, out, due, t0, t1, i0, i1, ro, key))
        if partition is not None:
            kept.append(op)
            continue
        if key is not last_key and key != last_key:
            last_key = key
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            add = group.append
        add(op)
    if partition is not None:
        groups = {k: list(v) for k, v in partition(kept).items() if v}
    if model.unobserved is not None:
        for key, ops in groups.items():
            if not prune(key):
                continue
            drop = model.unobserved(ops)
            if drop:
                groups[key] = [op for n, op in enumerate(ops) if n not in drop]
                dropped += len(drop)
    return groups, dropped


class _KeyPlan:
    """How each key is searched: window size, and for a piece of a longer history the carry
    in and out and what later pieces may observe (see the options in the module doc)."""

    def __init__(self, window_ops: int, carry: dict[Any, Carried | None] | None,
                 later_observes: Any = None, continues: Any = None, paths: bool = True):
        self.window_ops, self.carry, self.later_observes = window_ops, carry, later_observes
        self.continues, self.paths = continues, paths

    def search(self, model: Model, key: Any, ops: list[SearchOp], max_configs: int,
               progress: dict[str, Any]) -> Generator[None, None, Outcome]:
        if self.carry is None:
            return check_key(model, ops, max_configs, progress, min_ops=self.window_ops,
                             paths=self.paths)
        if key in self.carry and self.carry[key] is None:
            return _undecided_before()
        more = self.continues is None or bool(self.continues(key))
        later = None
        if more:
            later = ((lambda value: True) if self.later_observes is None else
                     (lambda value: bool(self.later_observes(key, value))))
        return check_key(model, ops, max_configs, progress, carry=self.carry.get(key),
                         collect=more, min_ops=self.window_ops, later_observes=later,
                         paths=self.paths)


def _undecided_before() -> Generator[None, None, Outcome]:
    """A piece of a key whose earlier piece was not decided: nothing to start it from."""
    return Outcome(valid="unknown", reason="an earlier part of the key was not decided")
    yield  # a generator, like search


def _run_keys(model: Model, groups: dict[Any, list[SearchOp]], time_limit: float,
              max_configs: int, plan: _KeyPlan | None = None
              ) -> tuple[dict[Any, Outcome], list[Any], float]:
    """Round-robin the per-key searches, smallest key first; stop at the first invalid key."""
    plan = plan or _KeyPlan(WINDOW_OPS, None)
    start = time.perf_counter()
    deadline = start + time_limit
    order = sorted(groups, key=lambda k: (len(groups[k]), repr(k)))
    progress: dict[Any, dict[str, Any]] = {k: {} for k in order}
    active: list[tuple[Any, Generator[None, None, Outcome]]] = [
        (k, plan.search(model, k, groups[k], max_configs, progress[k])) for k in order]
    outcomes: dict[Any, Outcome] = {}
    while active:
        still: list[tuple[Any, Generator[None, None, Outcome]]] = []
        for n, (key, gen) in enumerate(active):
            try:
                next(gen)
            except StopIteration as stop:
                outcomes[key] = stop.value
                if stop.value.valid is False:
                    rest = still + active[n + 1:]
                    for _, g in rest:
                        g.close()
                    return outcomes, [k for k, _ in rest], time.perf_counter() - start
                continue
            still.append((key, gen))
        active = still
        # the memory cap holds for all keys together: give up the largest while over it
        total = sum(progress[k].get("configs", 0) for k, _ in active)
        while active and total > max_configs:
            key, gen = max(active, key=lambda a: progress[a[0]].get("configs", 0))
            active.remove((key, gen))
            gen.close()
            got = progress[key]
            total -= got.get("configs", 0)
            outcomes[key] = Outcome(
                valid="unknown", reason=f"memory cap of {max_configs} configurations reached "
                                        "(shared by the keys searched at the same time)",
                window=got.get("window"), steps=got.get("steps", 0),
                max_configs=got.get("configs", 0))
        if active and time.perf_counter() > deadline:
            for key, gen in active:
                gen.close()
                got = progress[key]
                outcomes[key] = Outcome(
                    valid="unknown", reason=f"time limit of {time_limit:g} s reached",
                    window=got.get("window"), steps=got.get("steps", 0),
                    max_configs=got.get("configs", 0))
            active = []
    return outcomes, [], time.perf_counter() - start


def _anomaly(model: Model, key: Any, ops: list[SearchOp], out: Outcome) -> Anomaly:
    """A readable counterexample: the prefix that worked, the op that cannot follow it.

    details: linearized (invoke indexes of the prefix's last PREFIX_SHOWN ops, in order),
    prefix_length, last_linearized (the last 8, described), stuck_on / stuck_op (the op
    that cannot be linearized after any such prefix), concurrent (ops open at that point,
    described), state (the model state the prefix leaves), model.
    """
    assert out.stuck_on is not None
    stuck = ops[out.stuck_on]
    desc = lambda j: f"#{ops[j].index} {model.describe_op(ops[j].inp, ops[j].out)}"  # noqa: E731
    state = model.describe_state(out.state)
    tail = [desc(j) for j in out.linearized[-8:]]
    keytxt = "" if key is None else f"key {key!r}: "
    message = (f"{keytxt}{desc(out.stuck_on)} cannot be linearized: the longest linearizable "
               f"prefix ({len(out.linearized)} ops) leaves state {state}")
    involved = [stuck.index] + ([stuck.complete_index] if stuck.complete_index >= 0 else [])
    involved += [ops[j].index for j in out.pending]
    return Anomaly(
        kind="nonlinearizable", message=message, ops=sorted(set(involved)), key=key,
        time=int(out.time) if out.time is not None else None,
        details={
            # the prefix in linearization order (its last PREFIX_SHOWN ops: a long run's
            # prefix is the whole history before the anomaly, which nobody reads)
            "linearized": [ops[j].index for j in out.linearized[-PREFIX_SHOWN:]],
            "prefix_length": len(out.linearized),
            "last_linearized": tail,
            "stuck_on": stuck.index,
            "stuck_op": desc(out.stuck_on),
            "concurrent": [desc(j) for j in out.pending],
            "state": state,
            "model": model.name,
        })

