"""The clock and member faults' options, combined schedule items, the new partition shapes,
and the optional-fault contract (logic only: nothing is started)."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.errors import BadInput
from chaos.faults import FAULTS, node_setup, packages_of, refused
from chaos.faults.clock import LIB, control_line, parse_spec
from chaos.faults.shapes import SHAPES, cut_pairs, partition_shape
from chaos.schedule import events, kinds_of, make_schedule, parse_nemeses
from tests.runhelp import invoke_cli


def test_clock_specs_parse_and_bad_ones_name_the_option():
    assert parse_spec("mixed") == {"mode": "mixed"}
    assert parse_spec("bump:-10") == {"mode": "bump", "offset_s": -10.0}
    assert parse_spec("strobe:1:200") == {"mode": "strobe", "offset_s": 1.0, "period_ms": 200}
    assert parse_spec("rate:0.5") == {"mode": "rate", "rate": 0.5}
    for bad, why in [("warp", "unknown mode 'warp'"), ("rate:0", "rate must be"),
                     ("bump:x", "must be numbers"), ("offset:1:2", "at most 1"),
                     ("strobe:1:1", "period")]:
        with pytest.raises(BadInput, match=why):
            parse_spec(bad)
    # the rate is always written: libfaketime keeps the last one when a spec has none
    assert control_line(-5) == "-5.000000 x1" and control_line(2.5, 0.5) == "+2.500000 x0.5"


def test_scheduled_clock_params_follow_the_spec():
    rng = random.Random(1)
    clock = FAULTS["clock"]
    assert clock.schedule_params(rng, {"clock": "bump:-7"}) == {
        "node": "leader", "mode": "bump", "offset_s": -7.0}
    modes = Counter(clock.schedule_params(rng, {})["mode"] for _ in range(200))
    assert set(modes) == {"offset", "bump", "strobe", "rate"}
    assert all(clock.schedule_params(rng, {"clock": "rate"})["rate"] in (0.5, 2.0)
               for _ in range(20))


def test_combined_items_share_a_window_and_stop_in_reverse():
    items = parse_nemeses("partition+clock,kill")
    assert items == ["partition+clock", "kill"] and kinds_of(items) == ["partition", "clock",
                                                                          "kill"]
    specs = make_schedule(items, interval=2, time_limit=12, seed=3)
    pairs = [s for s in specs if s.kind in ("partition", "clock")]
    assert pairs and all(a.start_s == b.start_s and a.stop_s == b.stop_s
                         for a, b in zip(pairs[::2], pairs[1::2]))
    order = [(what, s.kind) for t, what, s in events(specs) if t == pairs[0].start_s
             or t == pairs[0].stop_s]
    assert order[:2] == [("start", "partition"), ("start", "clock")]
    assert order[-2:] == [("stop", "clock"), ("stop", "partition")]
    with pytest.raises(BadInput, match="unknown nemesis 'warp'"):
        parse_nemeses("partition+warp")


@given(st.lists(st.sampled_from(["partition", "kill", "pause", "clock", "member",
                                 "partition+clock", "kill+member"]), min_size=1, max_size=4),
       st.integers(0, 1000))
def test_events_never_overlap_a_kind_with_itself(items, seed):
    """Every start is followed by its own stop before the same kind starts again."""
    open_: dict[str, int] = {}
    for _t, what, spec in events(make_schedule(items, interval=1, time_limit=20, seed=seed)):
        open_[spec.kind] = open_.get(spec.kind, 0) + (1 if what == "start" else -1)
        assert open_[spec.kind] in (0, 1)
    assert set(open_.values()) <= {0}


def test_clock_preloads_libfaketime_into_every_service_and_writes_the_control_file():
    env, files = node_setup(["partition", "clock"], "/data/n1", first=True)
    assert env["LD_PRELOAD"] == LIB and env["FAKETIME_TIMESTAMP_FILE"] == "/data/n1/.chaos-clock"
    assert env["FAKETIME_DONT_FAKE_MONOTONIC"] == "0"
    assert files == {".chaos-clock": "+0.000000 x1\n"}
    assert node_setup(["clock"], "/d", first=False)[1] == {}  # a restart keeps the file
    assert node_setup(["partition", "kill"], "/d", first=True) == ({}, {})
    assert packages_of(["clock", "member", "kill"]) == ("libfaketime",)


def test_optional_faults_are_refused_for_targets_that_do_not_list_them():
    refused(["clock", "member", "kill"], "kvlite", frozenset({"clock", "member"}))
    with pytest.raises(BadInput, match="target redis does not support the member fault"):
        refused(["kill", "member"], "redis", frozenset())


@pytest.mark.integration  # loading a real target's plugin may run a helper process
@pytest.mark.parametrize("target,nemesis", [("redis", "clock"), ("etcd", "member"),
                                            ("postgres", "partition+clock")])
def test_a_real_target_refuses_what_it_cannot_take_with_exit_4(tmp_path, target, nemesis):
    code, _out, err = invoke_cli("run", "--target", target, "--nemesis", nemesis,
                                 "--store", str(tmp_path), "--time-limit", "5")
    assert code == 4, err
    assert f"target {target} does not support" in err and not list(tmp_path.iterdir())


def test_a_bad_clock_option_is_exit_4(tmp_path):
    code, _out, err = invoke_cli("run", "--nemesis", "clock", "--clock", "bump:soon",
                                 "--store", str(tmp_path))
    assert code == 4 and "--clock bump:soon" in err


def test_minority_third_cuts_a_third_off():
    for n in (3, 5, 6, 9):
        nodes = [f"n{i}" for i in range(1, n + 1)]
        small, big = partition_shape(nodes, "minority-third", random.Random(n))
        assert len(small) == max(1, n // 3) and sorted(small + big) == sorted(nodes)


@given(st.integers(2, 9), st.lists(st.integers(1, 9), max_size=6), st.integers(0, 99))
def test_primaries_put_two_former_leaders_on_different_sides(n, led_ids, seed):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    led = list(dict.fromkeys(f"n{i}" for i in led_ids if i <= n))
    a, b = partition_shape(nodes, "primaries", random.Random(seed), leaders=led)
    assert sorted(a + b) == sorted(nodes) and {len(a), len(b)} == {n // 2, n - n // 2}
    if len(led) >= 2:
        assert (led[0] in a) != (led[1] in a)
    assert cut_pairs(nodes, [a, b])  # something is cut


def test_every_shape_is_drawn_by_mixed():
    drawn = {s.params["shape"] for s in make_schedule(["partition"], interval=1,
                                                      time_limit=400, seed=1, shape="mixed")}
    assert drawn == set(SHAPES)


def test_targets_lists_the_optional_faults_a_target_takes():
    code, out, _err = invoke_cli("targets", "kvlite")
    assert code == 0 and "--nemesis clock/member/membership: clock, member, membership" in out
    code, out, _err = invoke_cli("targets", "etcd")
    assert code == 0 and "--nemesis clock/member/membership: membership" in out
    code, out, _err = invoke_cli("targets", "redis")
    assert code == 0 and "--nemesis clock/member/membership: none" in out


def test_a_fault_library_counts_as_present_only_when_the_file_exists(tmp_path):
    from chaos.errors import SetupError
    from chaos.runtime.local import LocalRuntime, present

    lib = tmp_path / "libfake.so.1"
    assert not present(str(lib)) and present("sh")
    lib.write_text("")  # a library is not executable: `which` alone would not find it
    assert present(str(lib))
    gone = str(tmp_path / "missing" / "libfake.so.1")
    with pytest.raises(SetupError, match=r"libfake.so.1 \(package pkg-x\)") as err:
        LocalRuntime().check_binaries({str(lib): "pkg-y", gone: "pkg-x"})
    assert "pkg-y" not in str(err.value)
