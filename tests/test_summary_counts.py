"""The human summary: anomaly counts per kind, every kind shown, the truth about a capped
list, and what "observed" counts (chaos.history.summary.format_summary)."""
from __future__ import annotations

from chaos.history.summary import format_summary


def _outcome(anomalies, warnings=(), stats=None):
    return {"valid": False, "results": {"lost-writes": {
        "valid": False, "anomalies": anomalies, "warnings": list(warnings),
        "stats": stats or {"acknowledged": 10, "observed": 9, "lost": 3}}}}


def _a(kind, i):
    return {"kind": kind, "message": f"{kind} element {i}", "ops": [], "severity": "anomaly"}


def test_counts_per_kind_and_every_kind_is_shown_even_behind_many_of_another():
    anomalies = [_a("lost-write", i) for i in range(30)] + [_a("divergent", i) for i in range(5)]
    text = format_summary("run", _outcome(anomalies))
    assert "35 anomalies (30 lost-write, 5 divergent)" in text
    assert "- divergent" in text  # listed although 30 lost-writes come first
    assert text.count("    - ") == 10
    assert "... and 25 more (all of them are in results.json / --json)" in text


def test_one_kind_has_no_breakdown():
    text = format_summary("run", _outcome([_a("lost-write", i) for i in range(3)]))
    assert "3 anomalies;" in text and "(3 lost-write)" not in text


def test_a_capped_list_says_what_results_json_holds():
    anomalies = [_a("lost-write", i) for i in range(1000)]
    text = format_summary("run", _outcome(
        anomalies, warnings=["1263 lost elements, only the first 1000 listed"],
        stats={"acknowledged": 2412, "observed": 2408, "lost": 1263}))
    assert "1000 anomalies listed (capped, see the warning)" in text
    assert "... and 990 more in results.json / --json (they hold the 1000 listed" in text
    assert "all of them" not in text


def test_observed_is_explained():
    text = format_summary("run", _outcome([_a("lost-write", 1)]))
    assert "observed=9 (seen in any read)" in text
