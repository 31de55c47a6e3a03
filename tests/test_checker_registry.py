"""The checker registry: auto-selection from the ops present, names, safe running, explaining."""
from __future__ import annotations

from typing import Any, Mapping

import pytest

from chaos.checkers import CHECKERS, ORDER, run_checkers, select_checkers
from chaos.checkers.base import CheckResult
from chaos.errors import BadInput, ExitCode
from chaos.history.model import History
from tests.strategies import MS, HistoryBuilder


def set_history() -> History:
    b = HistoryBuilder()
    b.op(0, "add", 0, MS, value=1, node="n1")
    b.op(0, "add", 2 * MS, 3 * MS, value=2, node="n1")
    b.op(1, "read-set", 10 * MS, 11 * MS, result=[1], final=True)
    return b.history()


def register_history(with_monitor: bool = False) -> History:
    b = HistoryBuilder()
    b.op(0, "write", 0, MS, key="k", value=1)
    b.op(1, "read", 2 * MS, 3 * MS, key="k", result=1)
    if with_monitor:
        b.op("monitor", "status", 0, MS // 2, invoke_node="n1", node="n1",
             result={"role": "leader", "term": 1})
    return b.history()


def test_registry_names_and_order():
    assert set(CHECKERS) <= set(ORDER)
    assert {"lost-writes", "stale-reads", "dual-leaders", "perf"} <= set(CHECKERS)
    assert list(CHECKERS) == [n for n in ORDER if n in CHECKERS]
    for name, c in CHECKERS.items():
        assert c.name == name


def test_auto_selection_follows_the_ops_present():
    assert list(select_checkers(set_history(), None)) == ["lost-writes", "perf"]
    reg = list(select_checkers(register_history(), None))
    assert reg[0] == "stale-reads" and reg[-1] == "perf"
    if "linearizable" in CHECKERS:
        assert "linearizable" in reg
    assert "dual-leaders" in select_checkers(register_history(with_monitor=True), [])


def test_monitor_only_history_gets_no_perf():
    b = HistoryBuilder().op("monitor", "status", 0, MS, invoke_node="n1", node="n1",
                            result={"role": "leader", "term": 1})
    assert list(select_checkers(b.history(), None)) == ["dual-leaders"]


def test_named_checkers_are_taken_as_given_in_display_order():
    chosen = select_checkers(set_history(), ["perf", "stale-reads"])
    assert list(chosen) == ["stale-reads", "perf"]


def test_unknown_checker_name_is_bad_input_naming_it_and_the_valid_ones():
    with pytest.raises(BadInput) as err:
        select_checkers(set_history(), ["lost-write"])
    msg = str(err.value)
    assert "'lost-write'" in msg and "lost-writes" in msg and "perf" in msg
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_run_checkers_merges_verdicts_and_explains_anomalies():
    out = run_checkers(set_history(), select_checkers(set_history(), None))
    assert out["valid"] is False
    lw = out["results"]["lost-writes"]
    assert [a.kind for a in lw.anomalies] == ["lost-write"]
    assert lw.anomalies[0].explanation and "acknowledged by n1" in lw.anomalies[0].explanation
    assert out["results"]["perf"].valid is True


def test_valid_history_is_valid():
    h = register_history()
    out = run_checkers(h, {"stale-reads": CHECKERS["stale-reads"], "perf": CHECKERS["perf"]})
    assert out["valid"] is True


class Crashes:
    name = "crashes"

    def applies(self, history: History) -> bool:
        return True

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        raise RuntimeError("checker bug")


class Undecided:
    name = "undecided"

    def applies(self, history: History) -> bool:
        return True

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        return CheckResult(self.name, "unknown")


def test_a_crashing_checker_is_unknown_never_valid():
    out = run_checkers(register_history(), {"crashes": Crashes(), "perf": CHECKERS["perf"]})
    assert out["valid"] == "unknown"
    assert "RuntimeError: checker bug" in out["results"]["crashes"].error


def test_invalid_beats_unknown():
    out = run_checkers(set_history(), {"undecided": Undecided(),
                                       "lost-writes": CHECKERS["lost-writes"]})
    assert out["valid"] is False


def test_opts_reach_the_checkers():
    b = HistoryBuilder()
    for i in range(5):
        b.op(i, "add", 0, MS, value=i)
    b.op(9, "read-set", 5 * MS, 6 * MS, result=[], final=True)
    out = run_checkers(b.history(), {"lost-writes": CHECKERS["lost-writes"]},
                       {"max_anomalies": 2})
    assert len(out["results"]["lost-writes"].anomalies) == 2
