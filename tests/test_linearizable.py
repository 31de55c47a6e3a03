"""Linearizability checker: hand-written histories both ways, a brute-force cross-check, and
hypothesis histories generated from a sequential register with random concurrency."""
from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.checkers.linearizable import KV, LINEARIZABLE, REGISTER, check_linearizable
from chaos.checkers.linearizable.models import FAILED, UNKNOWN, freeze
from chaos.history.model import History
from tests.strategies import register_histories


def hist(*events: tuple) -> History:
    """Events (process, type, f, value[, key[, error]]) in real-time order; time = position."""
    ops = []
    for n, ev in enumerate(events):
        proc, typ, f, value = ev[:4]
        op: dict[str, Any] = {"index": n, "time": n, "process": proc, "type": typ, "f": f,
                              "value": value, "key": ev[4] if len(ev) > 4 else "k"}
        if len(ev) > 5:
            op["error"] = ev[5]
        ops.append(op)
    return History.from_ops(ops)


def seq(*ops: tuple) -> list[tuple]:
    """Sequential ops (process, f, invoke value, ok value) -> invoke/ok event pairs."""
    out: list[tuple] = []
    for proc, f, inv, ok in ops:
        out += [(proc, "invoke", f, inv), (proc, "ok", f, ok)]
    return out


def verdict(h: History, **opts: Any) -> Any:
    return check_linearizable(h, opts).valid


# --- register: both ways -----------------------------------------------------------------------

def test_sequential_register_valid():
    h = hist(*seq((0, "write", 1, 1), (1, "read", None, 1), (0, "cas", [1, 2], [1, 2]),
                  (1, "read", None, 2)))
    r = check_linearizable(h)
    assert r.valid is True and r.anomalies == []
    assert r.stats["model"] == "register" and r.stats["keys"] == 1


def test_stale_read_invalid_with_counterexample():
    h = hist(*seq((0, "write", 1, 1), (0, "write", 2, 2), (1, "read", None, 1)))
    r = check_linearizable(h)
    assert r.valid is False
    [a] = r.anomalies
    assert a.kind == "nonlinearizable" and a.key == "k"
    assert a.details["stuck_on"] == 4          # the read's invoke line
    assert a.details["linearized"] == [0, 2]   # both writes, in order
    assert a.details["prefix_length"] == 2
    assert a.details["state"] == "2"
    assert 4 in a.ops and 5 in a.ops
    assert "cannot be linearized" in a.message


def test_nil_read_matches_only_initial_state():
    assert verdict(hist(*seq((1, "read", None, None), (0, "write", 1, 1)))) is True
    assert verdict(hist(*seq((0, "write", 1, 1), (1, "read", None, None)))) is False
    # a nil read concurrent with the first write may come before it
    assert verdict(hist((0, "invoke", "write", 1), (1, "invoke", "read", None),
                        (1, "ok", "read", None), (0, "ok", "write", 1),
                        *seq((1, "read", None, 1)))) is True


def test_concurrent_writes_either_order_but_one_order():
    both = [(0, "invoke", "write", 1), (1, "invoke", "write", 2),
            (0, "ok", "write", 1), (1, "ok", "write", 2)]
    assert verdict(hist(*both, *seq((2, "read", None, 1), (2, "read", None, 1)))) is True
    assert verdict(hist(*both, *seq((2, "read", None, 2)))) is True
    assert verdict(hist(*both, *seq((2, "read", None, 2), (2, "read", None, 1)))) is False


def test_read_concurrent_with_write_may_see_either():
    for seen in (1, 2):
        h = hist(*seq((0, "write", 1, 1)), (0, "invoke", "write", 2), (1, "invoke", "read", None),
                 (1, "ok", "read", seen), (0, "ok", "write", 2))
        assert verdict(h) is True
    h = hist(*seq((0, "write", 1, 1)), (0, "invoke", "write", 2), (1, "invoke", "read", None),
             (1, "ok", "read", 3), (0, "ok", "write", 2))
    assert verdict(h) is False


def test_info_write_may_happen_any_time_later_or_never():
    base = [*seq((0, "write", 1, 1)), (1, "invoke", "write", 2), (1, "info", "write", None)]
    assert verdict(hist(*base, *seq((2, "read", None, 1), (2, "read", None, 2)))) is True
    assert verdict(hist(*base, *seq((2, "read", None, 1), (2, "read", None, 1)))) is True
    # once it took effect it cannot be undone without another write
    assert verdict(hist(*base, *seq((2, "read", None, 2), (2, "read", None, 1)))) is False
    # an invoke that never completed behaves the same
    never = [*seq((0, "write", 1, 1)), (1, "invoke", "write", 2)]
    assert verdict(hist(*never, *seq((2, "read", None, 2)))) is True
    assert verdict(hist(*never, *seq((2, "read", None, 2), (2, "read", None, 1)))) is False
    # but not before its invoke
    assert verdict(hist(*seq((2, "read", None, 2)), (1, "invoke", "write", 2),
                        (1, "info", "write", None))) is False


def test_cas_semantics():
    assert verdict(hist(*seq((0, "write", 1, 1), (0, "cas", [1, 2], [1, 2]),
                             (1, "read", None, 2)))) is True
    assert verdict(hist(*seq((0, "write", 3, 3), (0, "cas", [1, 2], [1, 2])))) is False
    # a cas from nil (never written)
    assert verdict(hist(*seq((0, "cas", [None, 5], [None, 5]), (1, "read", None, 5)))) is True
    # an unknown cas applies only if the compare would succeed
    h = hist(*seq((0, "write", 3, 3)), (1, "invoke", "cas", [1, 2]), (1, "info", "cas", None),
             *seq((2, "read", None, 2)))
    assert verdict(h) is False


def test_fail_modes():
    tagged = hist(*seq((0, "write", 1, 1)), (1, "invoke", "cas", [1, 2]),
                  (1, "fail", "cas", [1, 2], "k", "compare-failed"))
    untagged = hist(*seq((0, "write", 1, 1)), (1, "invoke", "cas", [1, 2]),
                    (1, "fail", "cas", [1, 2]))
    assert verdict(tagged) is False                     # auto: tagged compare failure observed
    assert verdict(tagged, fail="ignore") is True
    assert verdict(untagged) is True                    # auto: a plain fail did not happen
    assert verdict(untagged, fail="observe") is False
    ok_fail = hist(*seq((0, "write", 3, 3)), (1, "invoke", "cas", [1, 2]),
                   (1, "fail", "cas", [1, 2], "k", "compare-failed"))
    assert verdict(ok_fail) is True
    # a failed write did not happen, whatever the mode
    for mode in ("auto", "ignore", "observe"):
        h = hist(*seq((0, "write", 1, 1)), (1, "invoke", "write", 2), (1, "fail", "write", 2),
                 *seq((2, "read", None, 2)))
        assert verdict(h, fail=mode) is False


# --- kv and keys -------------------------------------------------------------------------------

def kvseq(*ops: tuple) -> list[tuple]:
    out: list[tuple] = []
    for proc, f, key, inv, ok in ops:
        out += [(proc, "invoke", f, inv, key), (proc, "ok", f, ok, key)]
    return out


def test_kv_model_both_ways():
    good = hist(*kvseq((0, "get", "a", None, ""), (0, "put", "a", "x", "x"),
                       (1, "append", "a", "y", "y"), (1, "get", "a", None, "xy"),
                       (2, "append", "b", "z", "z"), (2, "get", "b", None, "z")))
    r = check_linearizable(good)
    assert r.valid is True and r.stats["model"] == "kv" and r.stats["keys"] == 2
    bad = hist(*kvseq((0, "append", "a", "x", "x"), (1, "append", "a", "y", "y"),
                      (2, "get", "a", None, "yx"), (3, "get", "b", None, "")))
    r = check_linearizable(bad)
    assert r.valid is False and [a.key for a in r.anomalies] == ["a"]


def test_keys_are_independent_and_first_invalid_key_reported():
    h = hist(*seq((0, "write", 1, 1)), *[(p, t, f, v, "other") for p, t, f, v in
                                         seq((1, "write", 7, 7), (1, "read", None, 7))],
             *seq((2, "read", None, None)))
    r = check_linearizable(h)
    assert r.valid is False and r.anomalies[0].key == "k"
    assert r.stats["keys"] == 2


def test_budget_gives_unknown_never_valid():
    n = 14
    writes = [(p, "invoke", "write", p) for p in range(n)] + \
             [(p, "ok", "write", p) for p in range(n)]
    h = hist(*writes, *seq((99, "read", None, 0)))
    r = check_linearizable(h, {"max_configs": 50})
    assert r.valid == "unknown"
    assert r.stats["undecided"][0]["key"] == "k"
    assert "memory" in r.stats["undecided"][0]["reason"]
    assert r.warnings
    assert check_linearizable(h).valid is True  # decidable with the default budget


def concurrent_writes(n: int, key: str, read: int) -> list[tuple]:
    """n writes all concurrent, then a read of `read`: 99 was never written, so the search
    must exhaust every order of every subset (2**n * n configurations) to refute it."""
    return ([(p, "invoke", "write", p, key) for p in range(n)]
            + [(p, "ok", "write", p, key) for p in range(n)]
            + [(99, "invoke", "read", None, key), (99, "ok", "read", read, key)])


def test_time_limit_gives_unknown_with_key_and_window():
    r = check_linearizable(hist(*concurrent_writes(17, "hard", 99)), {"time_limit": 0.3})
    assert r.valid == "unknown"
    [u] = r.stats["undecided"]
    assert u["key"] == "hard" and "time limit" in u["reason"] and u["window"]


def test_memory_cap_is_shared_by_keys():
    h = hist(*concurrent_writes(17, "a", 99), *concurrent_writes(17, "b", 99))
    r = check_linearizable(h, {"max_configs": 2000})
    assert r.valid == "unknown"
    reasons = [u["reason"] for u in r.stats["undecided"]]
    assert len(reasons) == 2 and any("shared" in why for why in reasons)


def test_hard_key_does_not_starve_an_invalid_one():
    easy = [(p, t, f, v, "easy") for p, t, f, v in
            seq((1, "write", 1, 1), (1, "write", 2, 2), (2, "read", None, 1))]
    h = hist(*concurrent_writes(17, "hard", 99), *easy)
    r = check_linearizable(h, {"time_limit": 30})
    assert r.valid is False and [a.key for a in r.anomalies] == ["easy"]
    assert r.stats["skipped_keys"] == ["hard"]
    assert r.stats["seconds"] < 5


def test_applies():
    assert LINEARIZABLE.applies(hist(*seq((0, "read", None, None))))
    assert LINEARIZABLE.applies(hist(*kvseq((0, "get", "a", None, ""))))
    assert not LINEARIZABLE.applies(hist(*seq((0, "add", 1, 1))))
    assert not LINEARIZABLE.applies(hist(("nemesis", "invoke", "read", None),
                                         ("nemesis", "info", "read", None)))
    assert LINEARIZABLE.name == "linearizable"


def test_model_choice_option():
    h = hist(*seq((0, "write", 1, 1)))
    assert check_linearizable(h, {"model": "register"}).stats["model"] == "register"
    with pytest.raises(ValueError):
        check_linearizable(h, {"model": "nope"})


def test_partition_hook():
    """Per key (default) two registers are fine; as one object (a custom partition) they
    are not: the read of nil on key b follows the write on key a."""
    h = hist(*seq((0, "write", 1, 1, )), *[(p, t, f, v, "b") for p, t, f, v in
                                          seq((1, "read", None, None))])
    assert verdict(h) is True
    one = dataclasses.replace(REGISTER, partition=lambda ops: {"all": list(ops)})
    r = check_linearizable(h, {"model": one})
    assert r.valid is False and r.anomalies[0].key == "all"


def test_models_step_pure():
    assert REGISTER.step(None, ("read", None), None) == (True, None)
    assert REGISTER.step(0, ("read", None), None)[0] is False
    assert REGISTER.step(1, ("cas", (1, 2)), FAILED)[0] is False
    assert REGISTER.step(3, ("cas", (1, 2)), UNKNOWN) == (True, 3)
    assert KV.step("ab", ("append", "c"), "c") == (True, "abc")
    assert KV.step("", ("get", None), None) == (True, "")   # an absent key reads as ""
    assert KV.step("a", ("append", 7), 7) == (True, "a7")
    assert KV.reachable is not None
    assert KV.reachable("ab", ("get", None), "abc", ()) is True
    assert KV.reachable("b", ("get", None), "abc", ()) is False
    assert KV.reachable("b", ("get", None), "abc", [("put", "a")]) is True
    assert freeze([1, [2, 3]]) == (1, (2, 3))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text("ab"),
    lambda inner: st.lists(inner, max_size=2).map(freeze), max_leaves=4)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values, json_values)
def test_register_read_only_test_agrees_with_step(state, a, b):
    """The inline test the search runs for a read or a failed compare (Model.read_only_test)
    says legal exactly where step does, for any state a history can leave (nil, nan, 0 vs
    False, tuples: None means step decides)."""
    assert REGISTER.read_only_test is not None
    for inp, out in ((("read", None), a), (("cas", (a, b)), FAILED)):
        got = REGISTER.read_only_test(inp, out)
        if got is None:
            continue
        value, equal = got
        legal = (value == state) if equal else (state != value)
        assert bool(legal) == bool(REGISTER.step(state, inp, out)[0]), (state, inp, out)
    assert REGISTER.read_only_test(("read", None), UNKNOWN) is None
    assert REGISTER.read_only_test(("write", a), a) is None


# --- brute force cross-check on small random histories ----------------------------------------

def brute_force(ops: list[dict], model: Any = REGISTER) -> bool:
    """Reference: try every order of every allowed subset (due ops all, unknown ones any)."""
    due = [o for o in ops if o["out"] is not UNKNOWN]
    unk = [o for o in ops if o["out"] is UNKNOWN]
    for r in range(len(unk) + 1):
        for extra in itertools.combinations(unk, r):
            chosen = due + list(extra)
            for perm in itertools.permutations(chosen):
                ok = all(not (b["t1"] < a["t0"]) for x, a in enumerate(perm)
                         for b in perm[x + 1:])
                if not ok:
                    continue
                state: Any = model.init()
                for o in perm:
                    legal, state = model.step(state, o["inp"], o["out"])
                    if not legal:
                        break
                else:
                    return True
    return False


small_op = st.tuples(st.sampled_from(["read", "write", "cas"]), st.integers(0, 2),
                     st.integers(0, 2), st.sampled_from(["ok", "ok", "info", "fail"]),
                     st.integers(0, 12), st.integers(0, 6), st.sampled_from([None, 0, 1, 2]))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(small_op, min_size=1, max_size=6))
def test_agrees_with_brute_force(spec):
    events: list[tuple[int, int, dict]] = []
    refs: list[dict] = []
    for p, (f, a, b, typ, t0, dur, read_val) in enumerate(spec):
        if f == "read":
            typ = "ok" if typ == "fail" else typ
            inv, res = None, read_val
        elif f == "write":
            typ = "ok" if typ == "fail" else typ
            inv, res = a, a
        else:
            inv, res = [a, b], [a, b]
        t1 = t0 + dur
        out = {"ok": freeze(res), "info": UNKNOWN, "fail": FAILED}[typ]
        if not (f == "read" and typ == "info"):
            # an unknown outcome may take effect any time after its invoke: no real end
            end = 10**9 if typ == "info" else t1
            refs.append({"inp": (f, freeze(inv)), "out": out, "t0": t0, "t1": end})
        base = {"process": p, "f": f, "key": "k"}
        events.append((2 * t0, 0, {**base, "type": "invoke", "value": inv}))
        comp = {**base, "type": typ, "value": res if typ == "ok" else inv}
        if typ == "fail":
            comp["error"] = "compare-failed"
        events.append((2 * t1 + 1, 1, comp))  # completions after invokes at equal times
    events.sort(key=lambda e: (e[0], e[1]))
    ops = [{**op, "index": n, "time": t} for n, (t, _, op) in enumerate(events)]
    # re-express the reference intervals in event times: t0 -> 2*t0, t1 -> 2*t1 + 1
    for ref in refs:
        ref["t0"], ref["t1"] = 2 * ref["t0"], 2 * ref["t1"] + 1
        # (10**9 stays far beyond every event time)
    assert check_linearizable(History.from_ops(ops)).valid is brute_force(refs)


kv_op = st.tuples(st.sampled_from(["get", "put", "append", "append"]), st.sampled_from("ab"),
                  st.sampled_from(["ok", "ok", "ok", "info"]), st.integers(0, 12),
                  st.integers(0, 6), st.sampled_from(["", "a", "b", "ab", "ba", "aa", "bab"]))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(kv_op, min_size=1, max_size=6))
def test_kv_agrees_with_brute_force(spec):
    """The kv model with its prefix pruning (a get needs the state to be a prefix of what it
    read unless a put may come first) against exhaustive search."""
    events: list[tuple[int, int, dict]] = []
    refs: list[dict] = []
    for p, (f, arg, typ, t0, dur, read) in enumerate(spec):
        inv, res = (None, read) if f == "get" else (arg, arg)
        t1 = t0 + dur
        if not (f == "get" and typ == "info"):
            refs.append({"inp": (f, inv), "out": res if typ == "ok" else UNKNOWN,
                         "t0": 2 * t0, "t1": 2 * t1 + 1 if typ == "ok" else 10**9})
        base = {"process": p, "f": f, "key": "k"}
        events.append((2 * t0, 0, {**base, "type": "invoke", "value": inv}))
        events.append((2 * t1 + 1, 1, {**base, "type": typ, "value": res}))
    events.sort(key=lambda e: (e[0], e[1]))
    ops = [{**op, "index": n, "time": t} for n, (t, _, op) in enumerate(events)]
    r = check_linearizable(History.from_ops(ops))
    assert r.valid is brute_force(refs, KV)
    if r.valid is False:
        assert r.anomalies[0].details["stuck_on"] in r.anomalies[0].ops


# --- hypothesis: generated from a sequential register, then widened ---------------------------

@st.composite
def register_runs(draw):
    """A valid history: ops applied one by one to a register, intervals widened around them.

    Op i takes effect at time 10*i; its interval is widened randomly around that point, so any
    overlap is possible but the real-time order always agrees with the sequential order. The
    run starts with two sequential writes (values 1000, 1001) and ends with a read invoked after
    every other op returned: reading 1000 there would be a read of an overwritten value.
    """
    n = draw(st.integers(2, 24))
    state: Any = None
    ops: list[dict] = []
    next_val = 1
    plan = [("write", 1000), ("write", 1001)] + [
        (draw(st.sampled_from(["read", "write", "cas", "cas"])), None) for _ in range(n)]
    for i, (f, fixed) in enumerate(plan):
        point = 10 * (i + 1)
        widen = draw(st.integers(0, 60)) if fixed is None else 0
        t0 = point - draw(st.integers(0, widen)) if widen else point - 1
        t1 = point + draw(st.integers(0, widen)) if widen else point + 1
        outcome = "ok" if fixed else draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        if f == "write":
            value = fixed if fixed else next_val
            next_val += 1
            if outcome == "fail":
                outcome = "ok"
            inv = res = value
            if outcome == "ok" or draw(st.booleans()):
                state = value  # an unknown write took effect here, or (else) never did
        elif f == "read":
            if outcome == "fail":
                outcome = "ok"
            inv, res = None, state
        else:
            expected = state if draw(st.booleans()) else draw(st.sampled_from([None, 1, 2]))
            new = next_val
            next_val += 1
            inv = res = [expected, new]
            hit = expected == state and (expected is None) == (state is None)
            if hit and outcome == "fail":
                outcome = "ok"
            if not hit and outcome == "ok":
                outcome = "fail"
            if hit:
                state = new
        ops.append({"f": f, "inv": inv, "res": res, "type": outcome, "t0": t0, "t1": t1})
    ops.append({"f": "read", "inv": None, "res": state, "type": "ok",
                "t0": max(o["t1"] for o in ops) + 5, "t1": max(o["t1"] for o in ops) + 6})
    return ops


def to_history(ops: list[dict]) -> History:
    """Assign processes (a free one if any, else a new id) and emit invoke/completion lines."""
    events: list[tuple[int, int, dict]] = []
    busy_until: dict[int, int] = {}
    for o in sorted(ops, key=lambda o: o["t0"]):
        proc = next((p for p, t in busy_until.items() if t < o["t0"]), len(busy_until))
        busy_until[proc] = o["t1"] if o["type"] != "info" else 10**9
        base = {"process": proc, "f": o["f"], "key": "r"}
        events.append((o["t0"], 0, {**base, "type": "invoke", "value": o["inv"]}))
        comp = {**base, "type": o["type"], "value": o["res"] if o["type"] == "ok" else o["inv"]}
        if o["type"] == "fail":
            comp["error"] = "compare-failed"
        events.append((o["t1"], 1, comp))
    events.sort(key=lambda e: (e[0], e[1]))
    return History.from_ops([{**op, "index": n, "time": t} for n, (t, _, op) in enumerate(events)])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_runs())
def test_generated_histories_are_valid(ops):
    for mode in ("auto", "ignore"):
        r = check_linearizable(to_history(ops), {"fail": mode})
        assert r.valid is True, r.anomalies


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_runs())
def test_read_of_overwritten_value_is_invalid(ops):
    ops[-1] = {**ops[-1], "res": 1000}   # 1000 was overwritten by 1001 before anything else
    r = check_linearizable(to_history(ops))
    assert r.valid is False
    assert r.anomalies[0].details["stuck_op"].endswith("-> 1000")


# --- the project's shared generators (tests/strategies.py), multi-key --------------------------

@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_histories(max_ops=40))
def test_shared_generator_histories_are_linearizable(gen):
    r = check_linearizable(gen.history())
    assert r.valid is True, [a.message for a in r.anomalies]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_histories(inject="stale-read", max_ops=40))
def test_shared_generator_stale_read_is_not_linearizable(gen):
    r = check_linearizable(gen.history())
    assert r.valid is False and r.anomalies[0].kind == "nonlinearizable"


def long_run(n: int, keys: int, overlap: int, p_info: float, seed: int) -> History:
    """A long valid register run with many unknown (info) ops: sequential model, widened."""
    import random
    rnd = random.Random(seed)
    state: dict[str, Any] = {}
    ops: list[dict] = []
    for i in range(n):
        key = f"k{rnd.randrange(keys)}"
        f = rnd.choice(["read", "read", "write", "cas"])
        point, width = 10 * (i + 1), rnd.randint(0, 10 * overlap)
        typ = "info" if f != "read" and rnd.random() < p_info else "ok"
        cur = state.get(key)
        if f == "read":
            inv, res = None, cur
        elif f == "write":
            inv = res = i + 1
            if typ == "ok" or rnd.random() < 0.5:
                state[key] = inv
        else:
            inv = res = [cur if rnd.random() < 0.5 else rnd.randint(1, i + 1), i + 1]
            hit = inv[0] == cur
            if typ == "ok" and not hit:
                typ = "fail"  # plain fail: did not happen
            if hit and (typ == "ok" or rnd.random() < 0.5):
                state[key] = i + 1
        ops.append({"f": f, "inv": inv, "res": res, "type": typ, "key": key,
                    "t0": point - rnd.randint(0, width), "t1": point + rnd.randint(0, width)})
    events: list[tuple[int, int, dict]] = []
    free: list[tuple[int, int]] = []  # (busy until, process): a heap of live processes
    n_procs = 0
    for o in sorted(ops, key=lambda o: o["t0"]):
        if free and free[0][0] < o["t0"]:
            proc = heapq.heappop(free)[1]
        else:
            proc, n_procs = n_procs, n_procs + 1
        if o["type"] != "info":  # after info the process is retired
            heapq.heappush(free, (o["t1"], proc))
        base = {"process": proc, "f": o["f"], "key": o["key"]}
        events.append((o["t0"], 0, {**base, "type": "invoke", "value": o["inv"]}))
        events.append((o["t1"], 1, {**base, "type": o["type"],
                                    "value": o["res"] if o["type"] == "ok" else o["inv"]}))
    events.sort(key=lambda e: (e[0], e[1]))
    return History.from_ops([{**op, "index": n, "time": t} for n, (t, _, op) in enumerate(events)])


def test_long_run_with_many_unknown_ops_stays_cheap():
    """5,000 ops, 10% of updates info: unknown writes nobody observes are not tried, so the
    search does a few model steps per op instead of one per unknown op per configuration."""
    h = long_run(5000, 3, 8, 0.1, seed=7)
    r = check_linearizable(h)
    assert r.valid is True
    assert r.stats["steps"] < 20 * r.stats["ops"], r.stats
