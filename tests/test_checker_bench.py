"""The checker benchmark's generated histories mean what the benchmark says (small sizes)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chaos.checkers.dual_leaders import DUAL_LEADERS
from chaos.checkers.lost_writes import LOST_WRITES
from chaos.checkers.stale_reads import STALE_READS

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_checkers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_checkers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_set_history_is_valid_and_dropped_adds_are_all_found(bench):
    assert LOST_WRITES.check(bench.set_history(20_000)).valid is True
    h = bench.set_history(20_000, lose=0.01)
    r = LOST_WRITES.check(h)
    assert h.lost > 0 and r.stats["lost"] == h.lost
    assert r.stats["stale"] == r.stats["divergent"] == r.stats["unexpected"] == 0


def test_register_history_is_valid_and_injected_stale_reads_are_found(bench):
    h = bench.register_history(20_000)
    assert STALE_READS.check(h).valid is True
    assert DUAL_LEADERS.check(h).valid is True
    r = STALE_READS.check(bench.register_history(20_000, stale=0.01))
    assert r.valid is False and r.stats["stale"] > 0
