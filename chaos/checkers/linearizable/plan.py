"""What the search of one window needs, precomputed once: the return events in real-time
order, what is pending at each, and the ops' fields as columns (chaos.checkers.linearizable.
search). Also `UnknownPicker`: which unknown-outcome ops to try at a configuration.

The plan is built in one walk over the invokes and returns; the search then only indexes
lists by op position (`inps[j]`, `bits[j]`), which is most of what makes its inner loop cheap:
an attribute of an op or a freshly shifted `1 << j` costs more than a list index, and the
search does that millions of times.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import compress
from typing import TYPE_CHECKING, Any, Callable, Sequence

from chaos.checkers.linearizable.models import Model

if TYPE_CHECKING:
    from chaos.checkers.linearizable.search import SearchOp

_BITS: list[int] = [1 << j for j in range(1024)]

#: in a list of `Model.observes` results: the model raised TypeError for that op (it cannot
#: tell what the op observes), as asking it again would
UNTOLD: Any = type("Untold", (), {"__repr__": lambda self: "UNTOLD"})()


def bits(n: int) -> list[int]:
    """A list whose j-th item is 1 << j, for j < n at least (shared: never mutate it)."""
    while len(_BITS) < n:
        _BITS.extend(1 << j for j in range(len(_BITS), 2 * len(_BITS)))
    return _BITS


@dataclass
class Plan:
    """What is pending at each return (in real-time order), precomputed once per window.

    returns[k]:  the op whose return is the k-th return event
    segments[k]: due read-only ops invoked after return k-1 and before return k
    pend_upd[k], pend_ro[k]: due updating / read-only ops invoked and not returned before
                 return k (including returns[k] itself)
    ro_target[k]: returns[k] when that op is read-only, else -1
    kinds:       unknown-outcome ops grouped by input, each group in invoke order, groups
                 ordered by their first invoke; seq[j] is op j's rank among unknown invokes
    n_unknown[k]: how many unknown-outcome ops were invoked before return k
    inps, outs, dues, ros: the ops' `inp`, `out`, `due` and `read_only`, by position
    ro_kind, ro_value: how the search tests a due read-only op (Model.read_only_test):
                 1: legal iff ro_value == state, 2: iff state != ro_value, 0: with step
    Index k = len(returns) describes the end of the history.
    """

    returns: list[int]
    segments: list[Sequence[int]]
    pend_upd: list[list[int]]
    pend_ro: list[list[int]]
    ro_target: list[int]
    kinds: list[list[int]]
    seq: list[int]
    n_unknown: list[int]
    inps: Sequence[Any]
    outs: Sequence[Any]
    dues: Sequence[bool]
    ros: Sequence[bool]
    ro_kind: list[int]
    ro_value: list[Any]


def make_plan(ops: Sequence[SearchOp],
              ro_test: Callable[[Any, Any], tuple[Any, bool] | None] | None = None) -> Plan:
    """Walk the invoke and return events once and record what each return sees; with
    `ro_test` (Model.read_only_test) also how each read-only op is tested (Plan.ro_kind).

    The events are ordered by time, invokes before returns at equal times (closed intervals:
    the permissive order), invokes among themselves and returns among themselves by position.
    """
    n = len(ops)
    if n:
        inps, outs, dues, t0s, t1s, _i0, _i1, ros, _keys = zip(*ops)
    else:
        inps = outs = dues = t0s = t1s = ros = ()
    invoked = sorted(t0s)  # invoked[p]: the p-th invoke's time
    # the invokes in time order, by position (a window's ops usually are in that order)
    order: Sequence[int] = (range(n) if invoked == list(t0s) else
                            sorted(range(n), key=t0s.__getitem__))
    returns = sorted(compress(range(n), dues), key=t1s.__getitem__)
    segments: list[Sequence[int]] = []
    pend_upd: list[list[int]] = []
    pend_ro: list[list[int]] = []
    ro_target: list[int] = []
    n_unknown: list[int] = []
    unknown = _Kinds(n, inps)
    ro_kind = [0] * n
    ro_value: list[Any] = [None] * n
    upd: list[int] = []
    ro: list[int] = []
    # the last copies of upd / ro taken, shared by the returns until the list changes
    upd_copy: list[int] = []
    ro_copy: list[int] = []
    p = 0
    for r in returns:
        q = bisect_right(invoked, t1s[r], p)  # the invokes up to this return
        if q > p:
            seg: list[int] = []
            for i in order[p:q]:
                if not dues[i]:
                    unknown.add(i)
                elif ros[i]:
                    ro.append(i)
                    seg.append(i)
                    if ro_test is not None:
                        got = ro_test(inps[i], outs[i])
                        if got is not None:
                            ro_value[i] = got[0]
                            ro_kind[i] = 1 if got[1] else 2
                else:
                    upd.append(i)
            p = q
            segments.append(seg)
            if len(upd) != len(upd_copy):
                upd_copy = upd[:]
            if len(ro) != len(ro_copy):
                ro_copy = ro[:]
        else:
            segments.append(())
        pend_upd.append(upd_copy)
        pend_ro.append(ro_copy)
        n_unknown.append(unknown.count)
        if ros[r]:
            ro.remove(r)
            ro_copy = ro[:]
            ro_target.append(r)
        else:
            upd.remove(r)
            upd_copy = upd[:]
            ro_target.append(-1)
    for i in order[p:]:  # invoked after the last return: unknown outcome (a due op returns)
        unknown.add(i)
    segments.append(())
    pend_upd.append(upd)
    pend_ro.append(ro)
    n_unknown.append(unknown.count)
    return Plan(returns, segments, pend_upd, pend_ro, ro_target, unknown.kinds, unknown.seq,
                n_unknown, inps, outs, dues, ros, ro_kind, ro_value)


class _Kinds:
    """The unknown-outcome ops as they are invoked, grouped by input (Plan.kinds, seq)."""

    def __init__(self, n: int, inps: Sequence[Any]):
        self.inps = inps
        self.count = 0
        self.seq = [n] * n
        self.kinds: list[list[int]] = []
        self.by_kind: dict[Any, list[int]] = {}

    def add(self, i: int) -> None:
        self.seq[i] = self.count
        self.count += 1
        members = self.by_kind.get(self.inps[i])
        if members is None:
            members = self.by_kind[self.inps[i]] = []
            self.kinds.append(members)
        members.append(i)


class UnknownPicker:
    """Which unknown-outcome ops to try at a configuration.

    Equal unknown ops (same input) are interchangeable: only the earliest unused one of each
    kind is tried. With a model that tells what an unknown update leaves (`unknown_effect`)
    and what ops can see (`observes`), a kind is tried only when its value is observed by a
    pending due op, or by some unknown op (a chain of unknown ops), or when a pending op may
    observe anything: an effect nobody observes before it is overwritten never mattered.
    """

    def __init__(self, model: Model, plan: Plan, observed: Sequence[Any] | None = None):
        """`observed`: model.observes of each op, by position, when the caller has it
        (chaos.checkers.linearizable.windows asks it once per op); else asked here."""
        self.plan = plan
        self.kinds, self.seq, self.n_unknown = plan.kinds, plan.seq, plan.n_unknown
        self.filtered = model.unknown_effect is not None
        self.bits = bits(len(plan.seq))
        if not self.filtered:
            return
        assert model.unknown_effect is not None
        inps, outs = plan.inps, plan.outs
        static: set[Any] = set()
        # watch[j]: the kinds due op j observes the value of (None: it may observe anything);
        # a due op that observes no kind's value is not in it
        self.watch: dict[int, tuple[int, ...] | None] = {}
        self.relevant: list[list[int] | None] = [None] * len(plan.n_unknown)
        try:
            if observed is None:
                observed = list(map(model.observes, inps, outs))
            for members in self.kinds:
                for j in members:
                    seen = observed[j]
                    if seen is None or seen is UNTOLD:
                        raise TypeError("an unknown op may observe anything")
                    static.update(seen)
            self.always: list[int] = []
            by_value: dict[Any, list[int]] = {}
            for n, members in enumerate(self.kinds):
                value = model.unknown_effect(inps[members[0]])
                if value in static:
                    self.always.append(n)
                else:
                    by_value.setdefault(value, []).append(n)
            # the due ops that may observe anything or observe some kind's value: one C-level
            # test an op (most observe none), then their kinds
            values = by_value.keys()
            for j in compress(range(len(plan.dues)), plan.dues):
                seen = observed[j]
                if seen is None:
                    self.watch[j] = None
                elif seen is UNTOLD:
                    raise TypeError("the model cannot tell what an op observes")
                elif not values.isdisjoint(seen):
                    self.watch[j] = tuple(n for v in frozenset(seen)
                                          for n in by_value.get(v, ()))
        except TypeError:  # unhashable values, or no way to tell: try every kind
            self.filtered = False

    def candidates(self, k: int, m: int) -> list[int]:
        """The unknown ops worth trying at return k with ops `m` linearized, in the order of
        their kinds' first invoke.

        A kind is tried when it is `always` tried, or when a pending due op not linearized
        observes its value, or every kind when such an op may observe anything: the pending
        ops that observe some kind's value (few: most observe none) are listed once per k.
        """
        limit = self.n_unknown[k]
        if limit == 0:
            return []
        kinds: Sequence[int] = range(len(self.kinds))
        bit = self.bits
        if self.filtered:
            relevant = self.relevant[k]
            if relevant is None:
                watch = self.watch
                relevant = self.relevant[k] = [
                    j for j in self.plan.pend_upd[k] + self.plan.pend_ro[k] if j in watch]
            chosen: set[int] | None = None
            anything = False
            for j in relevant:
                if not m & bit[j]:
                    observed = self.watch[j]
                    if observed is None:
                        anything = True
                        break
                    if chosen is None:
                        chosen = set(observed)
                    else:
                        chosen.update(observed)
            if not anything:
                if chosen is None:
                    if not self.always:
                        return []
                    kinds = self.always
                else:
                    chosen.update(self.always)
                    kinds = sorted(chosen)  # first-invoke order: the loop below stops early
        out: list[int] = []
        seq = self.seq
        for n in kinds:
            members = self.kinds[n]
            if seq[members[0]] >= limit:
                break
            for j in members:
                if seq[j] >= limit:
                    break
                if not m & bit[j]:
                    out.append(j)
                    break
        return out
