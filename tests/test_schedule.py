"""Fault schedules: seeded, replayable, every requested kind present, within the time limit."""
from __future__ import annotations

import pytest

from chaos.errors import BadInput
from chaos.schedule import KINDS, FaultSpec, make_schedule, parse_nemeses


def test_parse_nemeses():
    assert parse_nemeses("partition") == ["partition"]
    assert parse_nemeses("all") == list(KINDS)
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
