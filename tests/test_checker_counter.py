"""Counter checker: reads must lie between the sure and the possible sums of adds."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers import select_checkers
from chaos.checkers.counter import COUNTER
from chaos.history import History


def _hist(events):
    """events: (time, process, type, f, value) tuples in time order."""
    return History.from_ops([{"index": i, "time": t, "process": p, "type": ty, "f": f, "value": v}
                             for i, (t, p, ty, f, v) in enumerate(events)])


def test_concurrent_and_indeterminate_adds_widen_the_range():
    h = _hist([
        (0, 0, "invoke", "add", 1), (10, 0, "ok", "add", 1),
        (11, 1, "invoke", "add", 5),                              # never completes: maybe
        (12, 2, "invoke", "read", None), (20, 2, "ok", "read", 6),   # 1 + maybe 5
        (21, 3, "invoke", "add", 2), (22, 3, "fail", "add", 2),   # surely did not happen
        (30, 2, "invoke", "read", None), (40, 2, "ok", "read", 1),   # 5 may not have happened
    ])
    assert COUNTER.applies(h)
    r = COUNTER.check(h)
    assert r.valid is True, r.anomalies


def test_read_above_and_below_the_bounds():
    h = _hist([
        (0, 0, "invoke", "add", 1), (10, 0, "ok", "add", 1),
        (20, 1, "invoke", "read", None), (30, 1, "ok", "read", 0),   # lost an acknowledged add
        (40, 1, "invoke", "read", None), (50, 1, "ok", "read", 3),   # more than was ever added
        (51, 2, "invoke", "add", 2), (52, 2, "fail", "add", 2),
        (60, 1, "invoke", "read", None), (70, 1, "ok", "read", 3),   # a failed add counted
    ])
    r = COUNTER.check(h)
    assert r.valid is False
    assert [a.details["value"] for a in r.anomalies] == [0, 3, 3]
    assert {a.kind for a in r.anomalies} == {"counter-out-of-bounds"}


def test_counter_is_not_judged_as_a_register_or_a_set():
    h = _hist([(0, 0, "invoke", "add", 1), (1, 0, "ok", "add", 1),
               (2, 0, "invoke", "read", None), (3, 0, "ok", "read", 1)])
    assert set(select_checkers(h, None)) == {"counter", "perf"}


@st.composite
def counter_histories(draw):
    """A sequential counter with random increments; intervals widened to overlap randomly."""
    n = draw(st.integers(1, 30))
    ops, t, total = [], 0, 0
    for _ in range(n):
        if draw(st.booleans()):
            amount = draw(st.integers(-3, 5))
            kind = draw(st.sampled_from(["ok", "ok", "info", "fail"]))
            happened = kind == "ok" or (kind == "info" and draw(st.booleans()))
            total += amount if happened else 0
            ops.append(("add", amount, kind, t))
        else:
            ops.append(("read", total, "ok", t))
        t += 10
    events = []
    for i, (f, v, kind, at) in enumerate(ops):
        start = at - draw(st.integers(0, 9))     # invoke a little before its linearization point
        end = at + draw(st.integers(1, 9))       # complete a little after
        events.append((start, i, "invoke", f, v if f == "add" else None))
        if kind != "info":
            events.append((end, i, kind, f, v))
    events.sort(key=lambda e: e[0])
    return events


@settings(max_examples=150, deadline=None)
@given(counter_histories())
def test_generated_counters_are_valid(events):
    assert COUNTER.check(_hist(events)).valid is True


@settings(max_examples=150, deadline=None)
@given(counter_histories(), st.integers(0, 10_000))
def test_an_impossible_read_is_found(events, pick):
    reads = [i for i, e in enumerate(events) if e[3] == "read" and e[2] == "ok"]
    if not reads:
        return
    i = reads[pick % len(reads)]
    possible = sum(abs(e[4]) for e in events if e[3] == "add" and e[2] == "invoke")
    t, p, ty, f, _ = events[i]
    events = list(events)
    events[i] = (t, p, ty, f, possible + 1)      # more than every add together could give
    r = COUNTER.check(_hist(events))
    assert r.valid is False and r.anomalies[0].kind == "counter-out-of-bounds"
