"""Fault schedules: seeded, replayable, every requested kind present, within the time limit."""
from __future__ import annotations

import pytest

from chaos.errors import BadInput
from chaos.faults.clock import DRIFT
from chaos.schedule import (ALL_COMBOS, KINDS, FaultSpec, all_items, kinds_of, make_schedule,
                            parse_nemeses)


def test_parse_nemeses():
    assert parse_nemeses("partition") == ["partition"]
    assert parse_nemeses("all") == ["all"] and kinds_of(["all"]) == list(KINDS)
    assert parse_nemeses("kill, pause") == ["kill", "pause"]
    assert parse_nemeses("none") == []
    with pytest.raises(BadInput, match="unknown nemesis 'bogus'"):
        parse_nemeses("kill,bogus")


def test_schedule_rhythm_and_limits():
    s = make_schedule(["partition"], interval=5, time_limit=30, seed=1)
    assert [(f.start_s, f.stop_s) for f in s] == [(5, 10), (15, 20), (25, 30)]
    assert all(f.params["shape"] == "isolate-leader" for f in s)
    assert make_schedule([], interval=5, time_limit=30, seed=1) == []
    assert make_schedule(["kill"], interval=5, time_limit=9, seed=1) == []


def test_schedule_is_seeded_and_round_trips():
    a = make_schedule(list(KINDS), interval=2, time_limit=40, seed=7, shape="mixed")
    b = make_schedule(list(KINDS), interval=2, time_limit=40, seed=7, shape="mixed")
    c = make_schedule(list(KINDS), interval=2, time_limit=40, seed=8, shape="mixed")
    assert a == b and a != c
    assert {f.kind for f in a} == set(KINDS)
    assert [FaultSpec.from_dict(f.to_dict()) for f in a] == a


TAKES_ALL = frozenset({"clock", "member", "membership"})


def _windows(specs: list[FaultSpec]) -> dict[tuple[float, float], list[str]]:
    out: dict[tuple[float, float], list[str]] = {}
    for f in specs:
        out.setdefault((f.start_s, f.stop_s), []).append(f.kind)
    return out


def test_all_adds_the_combinations_a_target_takes_and_only_those():
    assert all_items() == list(KINDS)  # a target with no optional fault: the four kinds
    assert all_items(TAKES_ALL) == list(KINDS) + list(ALL_COMBOS)
    assert all_items(frozenset({"membership"})) == list(KINDS) + ["membership+partition"]
    plain = make_schedule(["all"], interval=1, time_limit=40, seed=5)
    assert {f.kind for f in plain} == set(KINDS)
    assert all(len(kinds) == 1 for kinds in _windows(plain).values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_all_on_a_target_taking_every_fault_holds_each_combination_deterministically(seed):
    specs = make_schedule(["all"], interval=1, time_limit=14, seed=seed, optional=TAKES_ALL)
    assert specs == make_schedule(["all"], interval=1, time_limit=14, seed=seed,
                                  optional=TAKES_ALL)
    together = [kinds for kinds in _windows(specs).values()]
    # each combination once, its kinds in one window, started in the order written
    assert sorted("+".join(k) for k in together if len(k) > 1) == sorted(ALL_COMBOS)
    assert sorted(k[0] for k in together if len(k) == 1) == sorted(KINDS)
    clock = [f for f in specs if f.kind == "clock"]
    assert len(clock) == 1 and clock[0].params["mode"] == "rate"
    assert clock[0].params["rate"] in DRIFT  # a bounded drift inside all
    bump = make_schedule(["all"], interval=1, time_limit=14, seed=seed, optional=TAKES_ALL,
                         clock="bump:-20")
    assert [f.params for f in bump if f.kind == "clock"][0]["offset_s"] == -20
    # asked by name, the clock keeps its own default mix (not the drift of `all`)
    named = make_schedule(["clock"], interval=1, time_limit=40, seed=seed)
    assert {f.params["mode"] for f in named} - {"rate"}
