"""Tests for chaos.report (HTML + plots), chaos.report.junit and `chaos report`.

Histories are synthesised with a fixed seed: clients doing reads and writes, a partition that
leaves two leaders for a while, a kill, and monitor polls, so every part of the report has
something real to draw.
"""
from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from chaos.checkers.base import Anomaly, CheckResult
from chaos.cli import main
from chaos.history.model import History
from chaos.report import build_context, render, write_junit
from chaos.report.plots import ClientOps, bin_width, sample_indexes
from chaos.report.results import normalize_results
from chaos.report.timeline import fault_windows, leader_overlaps, lanes

REPO = Path(__file__).resolve().parent.parent
S = 1_000_000_000  # ns per second
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def synth_ops(n_client: int = 600, *, faults: bool = True, monitor: bool = True,
              duration_s: float = 10.0, seed: int = 1) -> list[dict[str, Any]]:
    """A plausible history: client ops, partition 3-6 s, kill n3 7-8 s, polls every 0.25 s.

    The partition isolates n1 (leader, term 1); n2 wins term 2 at 3.5 s while n1 still claims
    leadership until the heal at 6 s: a two-leader overlap in different terms.
    """
    rng = np.random.default_rng(seed)
    events: list[tuple[int, dict[str, Any]]] = []
    t_inv = np.sort(rng.uniform(0, duration_s * 0.95, n_client)) * S
    for i, t in enumerate(t_inv):
        proc = i  # one process per op: ops overlap in time, pairing must stay exact
        f = "write" if rng.random() < 0.5 else "read"
        key = f"k{rng.integers(3)}"
        lat = int(rng.lognormal(np.log(2e6), 0.6))
        in_partition = faults and 3 * S <= t <= 6 * S
        r = rng.random()
        typ = "ok"
        if in_partition and r < 0.3:
            typ, lat = "info", int(1e9)
        elif r < 0.05:
            typ = "fail"
        value = i if f == "write" else None
        result = i if f == "write" else int(rng.integers(i + 1))
        node = "n2" if in_partition and f == "write" and r > 0.8 else "n1"
        events.append((int(t), {"process": proc, "type": "invoke", "f": f, "key": key,
                                "value": value}))
        events.append((int(t) + lat, {"process": proc, "type": typ, "f": f, "key": key,
                                      "value": result if typ == "ok" else value, "node": node}))
    if faults:
        for start, stop, f1, f2, v in [(3.0, 6.0, "start-partition", "stop-partition",
                                        {"partition": [["n1"], ["n2", "n3"]]}),
                                       (7.0, 8.0, "kill", "restart", {"kill": ["n3"]})]:
            for t, f, val in ((start, f1, v), (stop, f2, None)):
                events.append((int(t * S), {"process": "nemesis", "type": "invoke", "f": f,
                                            "value": val}))
                events.append((int(t * S) + 5_000_000, {"process": "nemesis", "type": "ok",
                                                         "f": f, "value": val}))
    if monitor:
        for k in range(int(duration_s / 0.25)):
            t = k * 0.25
            for node in ("n1", "n2", "n3"):
                if faults and 7.0 <= t < 8.0 and node == "n3":
                    res, typ = None, "info"
                elif faults and 3.5 <= t < 6.0:
                    typ = "ok"
                    res = ({"role": "leader", "term": 1, "leader": "n1"} if node == "n1" else
                           {"role": "leader" if node == "n2" else "follower", "term": 2,
                            "leader": "n2"})
                elif faults and t >= 6.0:
                    typ = "ok"
                    res = {"role": "leader" if node == "n2" else "follower", "term": 2,
                           "leader": "n2"}
                else:
                    typ = "ok"
                    res = {"role": "leader" if node == "n1" else "follower", "term": 1,
                           "leader": "n1"}
                proc = "monitor"
                ti = int(t * S) + {"n1": 0, "n2": 1000, "n3": 2000}[node]
                events.append((ti, {"process": proc, "type": "invoke", "f": "status",
                                    "node": node}))
                events.append((ti + 500, {"process": proc, "type": typ, "f": "status",
                                          "node": node, "value": res}))
    # Pair by process in time order; the monitor polls nodes one after another (its invoke and
    # completion are 500 ns apart, the next node's invoke 1000 ns later), so pairs never interleave.
    events.sort(key=lambda e: e[0])
    ops = []
    for i, (t, op) in enumerate(events):
        ops.append({"index": i, "time": t, **op})
    return ops


def make_history(**kw: Any) -> History:
    return History.from_ops(synth_ops(**kw), source="synthetic")


def results_invalid(history: History) -> dict[str, Any]:
    """A lost-write anomaly (objects, as run_checkers returns them) plus a valid checker."""
    writes = history.pairs[(history.pairs["f"] == "write") & (history.pairs["type"] == "ok")]
    w = writes.iloc[len(writes) // 2]
    lost = CheckResult(
        checker="set", valid=False,
        anomalies=[Anomaly(kind="lost-write", message=f"write {w['value']} acknowledged by n2 "
                                                      "then lost", ops=[int(w["invoke_index"]),
                                                                        int(w["complete_index"])],
                           key=w["key"], time=int(w["complete_time"]),
                           explanation="partition n1 | n2,n3 active; n2 leader in term 2"),
                   Anomaly(kind="leader-overlap", message="n1 and n2 both leaders for 2.5 s",
                           time=int(3.5 * S), severity="warning")],
        stats={"acknowledged": 300, "lost": 1})
    ok = CheckResult(checker="stale-reads", valid=True, stats={"reads": 290})
    return {"valid": False, "results": {"set": lost, "stale-reads": ok}}


def images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIG
    return struct.unpack(">II", png[16:24])


def assert_self_contained(html: str) -> None:
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I), \
        "report links to something outside itself"
    assert "<script" not in html.lower()


# --- timeline -------------------------------------------------------------------------------

def test_fault_windows_pair_starts_with_stops():
    h = make_history()
    ws = fault_windows(h)
    assert [(w.kind, w.start // S, (w.end or 0) // S) for w in ws] == [("partition", 3, 6),
                                                                          ("kill", 7, 8)]
    assert ws[0].detail == "n1 | n2,n3" and ws[1].detail == "n3"


def test_fault_detail_from_the_completion_and_unverified_flagged():
    """chaos.nemesis resolves "leader" to a node in the completion; that is what a person needs."""
    ops = [{"process": "nemesis", "type": "invoke", "f": "kill", "value": {"node": "leader"}},
           {"process": "nemesis", "type": "ok", "f": "kill",
            "value": {"node": "n3", "chosen": "leader", "verified": False}},
           {"process": "nemesis", "type": "invoke", "f": "start-latency",
            "value": {"ms": 200, "jitter_ms": 50}},
           {"process": "nemesis", "type": "ok", "f": "start-latency",
            "value": {"ms": 200, "jitter_ms": 50, "did": {"links": 6}, "verified": True}}]
    kill, lat = fault_windows(History.from_ops(ops))
    assert (kill.detail, kill.outcome) == ("n3", "ok (not verified)")
    assert (lat.detail, lat.outcome, lat.end) == ("200±50 ms", "ok", None)


def test_heal_closes_partition_and_failed_start_opens_nothing():
    ops = [
        {"process": "nemesis", "type": "invoke", "f": "start-partition", "value": None, "time": 1},
        {"process": "nemesis", "type": "ok", "f": "start-partition", "value": None, "time": 2},
        {"process": "nemesis", "type": "invoke", "f": "pause", "value": ["n1"], "time": 3},
        {"process": "nemesis", "type": "fail", "f": "pause", "value": ["n1"], "time": 4},
        {"process": "nemesis", "type": "invoke", "f": "heal", "time": 5},
        {"process": "nemesis", "type": "ok", "f": "heal", "time": 6},
    ]
    ws = fault_windows(History.from_ops(ops))
    assert [(w.kind, w.start, w.end) for w in ws] == [("partition", 1, 6)]


def test_leader_overlap_found_and_absent():
    overlaps = leader_overlaps(make_history())
    assert len(overlaps) == 1
    o = overlaps[0]
    assert abs(o.start / S - 3.5) < 0.01 and abs(o.end / S - 6.0) < 0.01
    assert sorted(n for n, _ in o.leaders) == ["n1", "n2"] and not o.same_term
    assert leader_overlaps(make_history(faults=False)) == []


def test_same_term_overlap_is_flagged():
    ops = []
    for k in range(4):
        for node in ("n1", "n2"):
            ops += [{"process": "monitor", "type": "invoke", "f": "status", "node": node,
                     "time": k * 100},
                    {"process": "monitor", "type": "ok", "f": "status", "node": node,
                     "time": k * 100 + 1, "value": {"role": "leader", "term": 7}}]
    (o,) = leader_overlaps(History.from_ops(ops))
    assert o.same_term


# --- HTML -----------------------------------------------------------------------------------

def test_render_invalid_report(tmp_path):
    h = make_history()
    cfg = {"target": "kvlite", "options": {"replication": "async", "failover": "naive"},
           "nemesis": "partition,kill", "seed": 42, "time_limit": 10}
    out = render(h, results_invalid(h), tmp_path / "sub" / "report.html", config=cfg)
    html = out.read_text()
    assert_self_contained(html)
    assert 'class="verdict invalid"' in html
    assert "lost-write" in html and "acknowledged by n2 then lost" in html
    assert "partition n1 | n2,n3 active" in html          # explanation
    assert "replication=async" in html and "42" in html   # config
    assert "Two leaders at once" in html
    pngs = images(html)
    assert len(pngs) == 3
    for png in pngs:
        w, hgt = png_size(png)
        assert w >= 800 and hgt >= 200
    # the anomaly's ops are listed with their line index and time in ms
    w_idx = results_invalid(h)["results"]["set"].anomalies[0].ops[1]
    assert f"<td class=\"num\">{w_idx}</td>" in html


def test_render_valid_report_from_dicts_without_monitor(tmp_path):
    h = make_history(faults=False, monitor=False)
    res = {"valid": True, "results": {"stale-reads": CheckResult("stale-reads", True).to_dict()}}
    html = render(h, json.loads(json.dumps(res)), tmp_path / "r.html").read_text()
    assert_self_contained(html)
    assert 'class="verdict valid"' in html and 'class="verdict invalid"' not in html
    assert "No anomalies." in html and "No faults were injected." in html
    assert len(images(html)) == 2  # no monitor ops: no leadership lane plot
    assert "no leadership timeline" in html


def test_render_unknown_and_crashed_checker(tmp_path):
    h = make_history(n_client=50)
    res = {"results": {"linearizable": {"checker": "linearizable", "valid": "unknown",
                                        "error": "TimeoutError: budget <exhausted>"}}}
    html = render(h, res, tmp_path / "r.html").read_text()
    assert 'class="verdict unknown"' in html
    assert "budget &lt;exhausted&gt;" in html  # escaped, not raw markup


def test_huge_values_are_clipped_and_many_anomalies_render(tmp_path):
    """600 lost writes each listing a 5,000-element final read must not make a 100 MB report."""
    big = list(range(5000))
    ops = [{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read-set"},
           {"index": 1, "time": S, "process": 0, "type": "ok", "f": "read-set", "value": big}]
    anomalies = [Anomaly("lost-write", f"element {-i} lost", ops=[0, 1], time=i * 1_000_000)
                 for i in range(600)]
    res = {"valid": False, "results": {"set": CheckResult("set", False, anomalies=anomalies)}}
    html = render(History.from_ops(ops), res, tmp_path / "r.html").read_text()
    assert len(html) < 3_000_000
    assert "5,000 items" in html and "500 more anomalies" in html
    assert len(images(html)) == 2


def test_nested_run_config_is_shown(tmp_path):
    cfg = {"config": {"target": "kvlite", "target_options": {"replication": "async"},
                      "nemesis": ["partition", "kill"], "seed": 5},
           "versions": {"python": "3.11"}}
    html = render(make_history(n_client=20), {"valid": True, "results": {}},
                  tmp_path / "r.html", config=cfg).read_text()
    assert "replication=async" in html and "[&#34;partition&#34;, &#34;kill&#34;]" in html
    assert "<h1>chaos: kvlite, nemesis partition+kill</h1>" in html


def test_render_empty_history(tmp_path):
    html = render(History.from_ops([]), {"valid": True, "results": {}},
                  tmp_path / "r.html").read_text()
    assert len(images(html)) == 2


def test_context_numbers_anomalies_and_lists_ops():
    h = make_history()
    ctx = build_context(h, results_invalid(h))
    (lost, warn) = ctx["checkers"][0]["anomalies"]
    assert lost["label"] == "A1" and warn["label"] == "A2"
    assert [r["type"] for r in lost["op_rows"]] == ["invoke", "ok"]
    assert ctx["anomaly_count"] == 1 and ctx["warning_count"] == 1


def test_downsampling_keeps_rare_outcomes():
    types = np.array(["ok"] * 1000 + ["fail"] * 10 + ["info"] * 5)
    idx = sample_indexes(types, max_points=100)
    assert len(idx) == 100 and (types[idx] != "ok").sum() == 15
    assert list(sample_indexes(types[:50], max_points=100)) == list(range(50))


def test_bin_width():
    assert bin_width(60) == 1 and bin_width(3600) == 15 and bin_width(1.0) == 0.02


def test_client_ops_skip_nemesis_and_monitor():
    h = make_history(n_client=100)
    ops = ClientOps.from_history(h)
    assert len(ops) == 100 and set(ops.f_names) == {"read", "write"}


def test_normalize_results_never_invents_valid():
    assert normalize_results({"results": {}})["valid"] == "unknown"
    assert normalize_results({"results": {"a": {"valid": None}}})["valid"] == "unknown"
    with pytest.raises(TypeError):
        normalize_results({"results": {"a": 3}})


# --- JUnit ----------------------------------------------------------------------------------

def test_junit_failures_errors_and_passes(tmp_path):
    h = make_history(n_client=100)
    res = results_invalid(h)
    res["results"]["linearizable"] = CheckResult("linearizable", "unknown",
                                                 warnings=["key k1 undecided in budget"])
    path = write_junit(res, tmp_path / "j" / "junit.xml", suite_name="kvlite-async")
    root = ET.parse(path).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "kvlite-async"
    # a case per checker and one for the run (invalid: a failure naming the failing checker)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert "set" in cases["run"].find("failure").get("message")
    fail = cases["set"].find("failure")
    assert fail is not None and fail.get("message").startswith("1 anomaly: write")
    assert "lost-write" in fail.text
    assert cases["stale-reads"].find("failure") is None
    assert cases["stale-reads"].find("error") is None
    err = cases["linearizable"].find("error")
    assert err is not None and "undecided" in err.get("message") and "k1" in err.get("message")


def test_junit_all_valid_has_no_failures(tmp_path):
    res = {"valid": True, "results": {"a": CheckResult("a", True), "b": CheckResult("b", True)}}
    suite = ET.parse(write_junit(res, tmp_path / "j.xml", suite_name="s")).getroot()[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "0", "0")
    assert suite.find("testcase[@name='run']") is not None  # the run counts, and passes


def test_junit_run_unknown_despite_valid_checkers(tmp_path):
    res = {"valid": "unknown", "warnings": ["fault partition not verified"],
           "results": {"a": CheckResult("a", True)}}
    suite = ET.parse(write_junit(res, tmp_path / "j.xml", suite_name="s")).getroot()[0]
    assert suite.get("errors") == "1"
    err = suite.find("testcase[@name='run']/error")
    assert err is not None and "not verified" in err.get("message")


# --- CLI ------------------------------------------------------------------------------------

def write_run_dir(d: Path, h_ops: list[dict[str, Any]], results: dict[str, Any],
                  config: dict[str, Any] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "history.jsonl").write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in h_ops))
    (d / "results.json").write_text(json.dumps(results, default=str))
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    return d


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["report", *args])
    err = capsys.readouterr()
    return int(exc.value.code), err.out + err.err


def _dict_results(h: History) -> dict[str, Any]:
    res = results_invalid(h)
    return {"valid": False, "results": {k: v.to_dict() for k, v in res["results"].items()}}


def test_cli_report_run_dir(tmp_path, capsys):
    ops = synth_ops(n_client=200)
    h = History.from_ops(ops)
    d = write_run_dir(tmp_path / "run", ops, _dict_results(h), {"target": "kvlite", "seed": 7})
    code, out = run_cli([str(d), "--junit", str(tmp_path / "junit.xml")], capsys)
    assert code == 1, out  # the verdict's exit code: invalid
    html = (d / "report.html").read_text()
    assert 'class="verdict invalid"' in html and "kvlite" in html and len(images(html)) == 3
    assert ET.parse(tmp_path / "junit.xml").getroot()[0].get("failures") == "2"  # set + run
    code, _ = run_cli([str(d), "--out", str(tmp_path / "other.html")], capsys)
    assert code == 1 and (tmp_path / "other.html").exists()


def test_cli_suite_named_after_store_test_dir(tmp_path, capsys):
    ops = synth_ops(n_client=20, faults=False, monitor=False)
    d = write_run_dir(tmp_path / "store" / "kvlite-set" / "20261122T011822", ops,
                      {"valid": True, "results": {"a": {"valid": True}}})
    code, _ = run_cli([str(d), "--junit", str(tmp_path / "j.xml")], capsys)
    assert code == 0
    assert ET.parse(tmp_path / "j.xml").getroot()[0].get("name") == "kvlite-set"


def test_cli_report_valid_exit_0(tmp_path, capsys):
    ops = synth_ops(n_client=50, faults=False)
    d = write_run_dir(tmp_path / "run", ops, {"valid": True, "results": {"a": {"valid": True}}})
    code, out = run_cli([str(d)], capsys)
    assert code == 0 and "valid" in out


@pytest.mark.parametrize("setup,needle", [
    ("missing-dir", "no such run directory"),
    ("no-history", "history.jsonl"),
    ("bad-results", "results.json"),
    ("bad-history", "history.jsonl:2"),
    ("unwritable-out", "cannot write"),
])
def test_cli_bad_input_exit_4(tmp_path, capsys, setup, needle):
    d = tmp_path / "run"
    ops = [{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read"},
           {"index": 1, "time": 5, "process": 0, "type": "ok", "f": "read", "value": 1}]
    if setup != "missing-dir":
        write_run_dir(d, ops, {"valid": True, "results": {}})
    if setup == "no-history":
        (d / "history.jsonl").unlink()
    elif setup == "no-results":
        (d / "results.json").unlink()
    elif setup == "bad-results":
        (d / "results.json").write_text("{not json")
    elif setup == "bad-history":
        (d / "history.jsonl").write_text(
            '{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read"}\n'
            'garbage\n{"index": 1}\n')
    extra = []
    if setup == "unwritable-out":
        (tmp_path / "afile").write_text("x")
        extra = ["--out", str(tmp_path / "afile" / "report.html")]  # parent is a file
    code, out = run_cli([str(d), *extra], capsys)
    assert code == 4, out
    assert needle in out and "Traceback" not in out


def test_cli_subprocess_end_to_end(tmp_path):
    """The real entry point in a real process: exit code and one-line output."""
    ops = synth_ops(n_client=50, faults=False, monitor=False)
    d = write_run_dir(tmp_path / "run", ops, {"valid": "unknown", "results": {
        "lin": {"valid": "unknown", "warnings": ["undecided"]}}})
    p = subprocess.run([sys.executable, "-m", "chaos", "report", str(d)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert (d / "report.html").exists()
    p = subprocess.run([sys.executable, "-m", "chaos", "report", str(tmp_path / "nope")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 4 and "Traceback" not in p.stderr and "nope" in p.stderr


# --- scale ----------------------------------------------------------------------------------

def _big_history(n_ops: int) -> History:
    """n_ops client operations built straight into History (no JSON), to time rendering alone."""
    rng = np.random.default_rng(3)
    inv = np.sort(rng.integers(0, 600 * S, n_ops))
    lat = rng.integers(100_000, 50_000_000, n_ops)
    types = rng.choice(["ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "fail", "info"], n_ops)
    ops = []
    for i in range(n_ops):
        ops.append({"index": 2 * i, "time": int(inv[i]), "process": i, "type": "invoke",
                    "f": "write" if i % 2 else "read", "key": "k", "value": i})
        ops.append({"index": 2 * i + 1, "time": int(inv[i] + lat[i]), "process": i,
                    "type": str(types[i]), "f": "write" if i % 2 else "read", "key": "k",
                    "value": i})
    return History.from_ops(ops)


def test_render_120k_ops_is_fast(tmp_path):
    h = _big_history(120_000)
    t0 = time.perf_counter()
    html = render(h, {"valid": True, "results": {}}, tmp_path / "r.html").read_text()
    elapsed = time.perf_counter() - t0
    assert len(images(html)) == 2 and "50,000 of 120,000 shown" in html
    assert elapsed < 20, f"render took {elapsed:.1f}s"


@pytest.mark.slow
def test_render_1m_ops(tmp_path):
    h = _big_history(1_000_000)
    t0 = time.perf_counter()
    render(h, {"valid": True, "results": {}}, tmp_path / "r.html")
    elapsed = time.perf_counter() - t0
    print(f"render of 1M-op history: {elapsed:.2f}s")
    assert elapsed < 30


def test_report_timelines_are_the_checkers():
    """One home: the report's leader bars are dual-leaders' intervals, its overlaps the
    checker's overlap windows, its shaded faults perf's windows (no copies that disagree)."""
    from chaos.checkers import run_checkers, select_checkers
    from chaos.history.faults import fault_windows as shared_windows
    from chaos.history.leadership import leader_intervals

    h = make_history()
    bars = sorted((r.node, r.start, r.end) for r in lanes(h) if r.role == "leader")
    assert bars == sorted((iv.node, iv.start, iv.end) for iv in leader_intervals(h))
    out = run_checkers(h, select_checkers(h, ["dual-leaders", "perf"]))
    warned = [a.details for a in out["results"]["dual-leaders"].anomalies
              if a.kind == "overlapping-leaders"]
    assert [(o.start, o.end) for o in leader_overlaps(h)] == \
        [(d["window_start"], d["window_end"]) for d in warned]
    perf = out["results"]["perf"].stats["fault_windows"]
    assert [(w.kind, w.start / 1e9) for w in fault_windows(h)] == \
        [(w["kind"], w["start_s"]) for w in perf]
    assert [(w.start, w.end) for w in fault_windows(h)] == \
        [(w.start, w.end) for w in shared_windows(h)]


def test_cli_report_of_a_history_alone_analyses_it_first(tmp_path, capsys):
    """A directory holding only history.jsonl (copied from elsewhere, or a run killed before
    its check): report analyses it, writes results.json and report.html, exits with the verdict."""
    d = tmp_path / "copied"
    d.mkdir()
    (d / "history.jsonl").write_bytes(
        (REPO / "histories" / "lost-write-after-failover.jsonl").read_bytes())
    code, out = run_cli([str(d), "--junit", str(tmp_path / "j.xml")], capsys)
    assert code == 1, out
    assert "analysing history.jsonl first" in out
    results = json.loads((d / "results.json").read_text())
    assert results["valid"] is False and results["results"]["lost-writes"]["valid"] is False
    assert 'class="verdict invalid"' in (d / "report.html").read_text()
    fail = ET.parse(tmp_path / "j.xml").getroot().find(
        "testsuite/testcase[@name='lost-writes']/failure")
    assert fail is not None and "element 3" in fail.get("message")
