"""The run's own post-run check (chaos.run.check_run): `chaos analyze`'s sharded path, the same
verdict as the in-memory checkers, and report.html always (sampled for a big history)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import workloads
from chaos import run as runmod
from chaos.checkers import run_checkers, select_checkers
from chaos.history.reader import read_history

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.mark.parametrize("name, workload, valid", [
    ("valid-set.jsonl", "set", True),
    ("lost-write-after-failover.jsonl", "set", False),
    ("valid-register.jsonl", "register", True),
])
def test_check_run_gives_the_in_memory_verdict_and_a_report(tmp_path, name, workload, valid):
    shutil.copy(HISTORIES / name, tmp_path / "history.jsonl")
    wl = workloads.get(workload)
    doc, history = runmod.check_run(tmp_path, wl, [])
    mem = read_history(tmp_path / "history.jsonl")
    names = list(dict.fromkeys(wl.checkers + ["dual-leaders"]))
    expected = run_checkers(mem, select_checkers(mem, names),
                            {"final_reads_expected": wl.takes_final_ops})
    assert doc["valid"] == expected["valid"] == valid, doc["reasons"]
    assert json.loads((tmp_path / "results.json").read_text())["valid"] == doc["valid"]
    assert (tmp_path / "report.html").exists()


def test_a_history_over_the_sampling_limit_gets_a_sampled_report(tmp_path, monkeypatch):
    """Above chaos.report.sample.SAMPLE_ABOVE lines the run still writes report.html, drawn
    from a bounded sample, and the page says so."""
    import chaos.report as report
    shutil.copy(HISTORIES / "lost-write-after-failover.jsonl", tmp_path / "history.jsonl")
    monkeypatch.setattr(report, "SAMPLE_ABOVE", 10)
    doc, history = runmod.check_run(tmp_path, workloads.get("set"), [])
    assert doc["valid"] is False and (tmp_path / "results.json").exists()
    html = (tmp_path / "report.html").read_text()
    assert "this report is sampled" in html and "44 lines" in html
