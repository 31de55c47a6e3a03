"""The run archive's logic: the index, the pages, the store's file guard, compare, shrink's search.

All on generated stores (tests/storegen.py: real results documents of histories/) and plain
files; the browser tests of `chaos serve` are in test_serve_browser.py, a real shrink in
test_shrink_run.py.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from chaos.archive import pages
from chaos.archive.compare import compare_runs, format_comparison
from chaos.archive.index import INDEX_NAME, Index, run_dirs, summarize
from chaos.archive.shrink import Shrinker, compact, fewer_nodes, shorter
from chaos.archive.trends import configurations, series, svg_chart
from chaos.archive.web import store_file
from chaos.schedule import FaultSpec
from tests.runhelp import invoke_cli
from tests.storegen import make_store


@pytest.fixture(scope="module")
def gen_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store")
    make_store(store, 24, seed=3)
    return store


def _copy(store: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(store, dst, symlinks=True)
    return dst


# -- index ------------------------------------------------------------------------------------
def test_index_lines_match_the_run_directories(gen_store):
    idx = Index(gen_store)
    idx.refresh()
    assert set(idx.runs) == {run_id for run_id, _ in run_dirs(gen_store)}
    assert len(idx.runs) == 24
    verdicts = {r.verdict for r in idx.runs.values()}
    assert verdicts == {"valid", "invalid", "unknown"}
    lost = [r for r in idx.runs.values() if "lost-write" in r.anomalies]
    assert lost and all(r.verdict == "invalid" for r in lost)


def test_a_run_without_results_is_unknown_never_valid(tmp_path, gen_store):
    store = _copy(gen_store, tmp_path)
    run_id, run_dir = next(iter(run_dirs(store)))
    (run_dir / "results.json").unlink()
    s = summarize(run_dir)
    assert s is not None and s.verdict == "unknown" and "no results.json" in s.reasons[0]
    assert summarize(tmp_path) is None  # no config.json: not a run


def test_refresh_reads_only_appended_lines_and_sync_repairs(tmp_path, gen_store):
    store = _copy(gen_store, tmp_path)
    idx = Index(store)
    idx.refresh()
    v = idx.version
    idx.refresh()
    assert idx.version == v  # nothing appended: nothing read
    make_store(store, 2, seed=9, start=datetime(2027, 1, 1, tzinfo=timezone.utc))
    idx.refresh()
    assert len(idx.runs) == 26 and idx.version == v + 1
    # a run deleted, one copied in without an index line, the index lost: sync mends all
    gone_id, gone = next(iter(run_dirs(store)))
    shutil.rmtree(gone)
    new = store / "copied-in" / "20280101T000000"
    shutil.copytree(next(p for i, p in run_dirs(store)), new)
    added, dropped = idx.sync()
    assert (added, dropped) == (1, 1)
    assert gone_id not in idx.runs and "copied-in/20280101T000000" in idx.runs
    # a run re-checked (`chaos analyze` rewrote results.json): read again
    rid, rdir = next((i, p) for i, p in run_dirs(store) if idx.runs[i].verdict == "invalid")
    doc = json.loads((rdir / "results.json").read_text())
    doc["valid"], doc["results"] = "unknown", {}
    (rdir / "results.json").write_text(json.dumps(doc))
    assert idx.sync() == (1, 0) and idx.runs[rid].verdict == "unknown"
    assert idx.sync() == (0, 0)
    (store / INDEX_NAME).unlink()
    fresh = Index(store)
    assert fresh.sync() == (26, 0) and len(fresh.runs) == 26
    # a half-written last line is left for the next read, not misread
    with open(store / INDEX_NAME, "ab") as f:
        f.write(b'{"id": "partial')
    fresh.refresh()
    assert len(fresh.runs) == 26


# -- the file guard ---------------------------------------------------------------------------
def test_store_file_refuses_everything_outside_the_store(tmp_path, gen_store):
    store = _copy(gen_store, tmp_path).resolve()
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak")
    run_id = next(iter(run_dirs(store)))[0]
    assert store_file(store, f"{run_id}/config.json") is not None
    os.symlink(secret, store / "escape.txt")
    os.symlink(tmp_path, store / "escape-dir")
    os.symlink(f"{run_id}/results.json", store / "inside.json")
    for bad in ("../secret.txt", f"{run_id}/../../../secret.txt", str(secret), "/etc/passwd",
                "escape.txt", "escape-dir/secret.txt", "", run_id, "a\x00b", "..\\secret.txt",
                "./index.jsonl", "%2e%2e/secret.txt"):
        assert store_file(store, bad) is None, bad
    assert store_file(store, "inside.json") == (store / run_id / "results.json").resolve()


# -- pages ------------------------------------------------------------------------------------
def test_run_list_filters_sorts_and_pages(gen_store):
    idx = Index(gen_store)
    idx.refresh()
    runs = list(idx.runs.values())
    html = pages.run_list(runs, pages.Query(verdict="invalid"), "s")
    n_invalid = sum(r.verdict == "invalid" for r in runs)
    assert html.count('<tr class="run"') == n_invalid and f"{n_invalid} of 24 runs" in html
    html = pages.run_list(runs, pages.Query(q="etcd", sort="date", order="asc"), "s")
    rows = [r for r in sorted(runs, key=lambda r: r.started) if r.target == "etcd"]
    assert html.count('<tr class="run"') == len(rows)
    assert html.index(rows[0].id) < html.index(rows[-1].id)
    big = runs * 10  # 240 rows: three pages of 100
    html = pages.run_list(big, pages.Query.parse({"page": ["3"]}), "s")
    assert html.count('<tr class="run"') == 40 and "page 3 of 3" in html
    assert pages.Query.parse({"sort": ["nonsense"], "page": ["x"]}) == pages.Query()


def test_trends_per_configuration(gen_store):
    idx = Index(gen_store)
    idx.refresh()
    runs = list(idx.runs.values())
    configs = configurations(runs)
    assert len(configs) == 4 and sum(c.runs for c in configs) == 24
    naive = next(c for c in configs if "failover=naive" in c.key)
    mine = [r for r in runs if r.config_key == naive.key]
    s = series(mine)
    rate = s["detection rate (invalid / decided runs, per day)"]["rate"]
    decided = [r for r in mine if r.verdict != "unknown"]
    assert sum(v for _, v in rate) == pytest.approx(
        sum(r.verdict == "invalid" for r in decided) / len(decided) * len(rate))
    svg = svg_chart("t", s["client ops/s (per run)"])
    assert svg.startswith("<svg") and svg.count("<circle") == len(mine)
    html = pages.trend_page(naive.key, runs, "s")
    assert html.count("<svg") == 4 and naive.key in html


# -- compare ----------------------------------------------------------------------------------
def test_compare_names_what_changed(gen_store, tmp_path):
    ids = [i for i, _ in run_dirs(gen_store)]
    a = gen_store / next(i for i in ids if i.startswith("kvlite-set-partition/"))
    b = gen_store / next(i for i in ids if i.startswith("etcd-"))
    doc = compare_runs(a, b)
    assert doc["config"]["target"] == ["kvlite", "etcd"]
    assert doc["config"]["workload"] == ["set", "register"]
    assert "target_options.read_consistency" in doc["config"]
    sa, sb = summarize(a), summarize(b)
    assert doc["verdict"] == [sa.verdict, sb.verdict]
    for kind, (x, y, d) in doc["anomalies"].items():
        assert (x, y, d) == (sa.anomalies.get(kind, 0), sb.anomalies.get(kind, 0), y - x)
    text = format_comparison(doc)
    assert "target: kvlite -> etcd" in text
    same = compare_runs(a, a)
    assert same["config"] == {} and "config: the same" in format_comparison(same)
    code, out, _ = invoke_cli("compare", str(a), str(b), "--json")
    assert code == 0 and json.loads(out)["config"]["target"] == ["kvlite", "etcd"]
    code, _, err = invoke_cli("compare", str(a), str(tmp_path))
    assert code == 4 and "RUN_B" in err and "no config.json" in err


# -- shrink's search (the re-runs replaced by a rule; test_shrink_run.py runs real ones) -------
def _sched(n: int, shape: str = "halves") -> list[FaultSpec]:
    return [FaultSpec("partition", 3 + 6 * i, 6 + 6 * i, {"shape": shape, "n": i})
            for i in range(n)]


def test_shrink_finds_the_one_event_that_matters():
    calls = []

    def run_once(schedule, i):  # fails iff event 4 is there, at least 1.5 s long, any shape
        calls.append(schedule)
        hit = [s for s in schedule if s.params["n"] == 4 and s.stop_s - s.start_s >= 1.5]
        return f"run{len(calls)}", 7 if hit else 0

    sh = Shrinker(_sched(6), tries=2, budget=600, run_once=run_once)
    best = sh.run()
    assert [s.params["n"] for s in best] == [4]
    assert best[0].stop_s - best[0].start_s == 1.5       # 3 -> 1.5; 0.75 is under the minimum
    assert best[0].start_s == 3                           # pulled forward to the first start
    assert best[0].params["shape"] == "isolate-leader"    # fewer nodes cut off
    assert sh.stopped is None and len(sh.trials) < 20


def test_shrink_needs_both_events_when_both_matter():
    def run_once(schedule, i):
        ns = {s.params["n"] for s in schedule}
        return "r", int({1, 4} <= ns)

    best = Shrinker(_sched(6, "isolate-leader"), tries=1, budget=600, run_once=run_once).run()
    assert sorted(s.params["n"] for s in best) == [1, 4]


def test_shrink_keeps_a_flaky_reduction_reproduced_once_in_k():
    seen = {"n": 0}

    def run_once(schedule, i):  # reproduces only on the last of 3 tries
        seen["n"] += 1
        return "r", int(i == 2)

    sh = Shrinker(_sched(4, "isolate-leader"), tries=3, budget=600, run_once=run_once)
    assert len(sh.run()) == 1
    assert all(t.tries == 3 and t.reproduced == 1 for t in sh.trials if t.reproduced)


def test_shrink_budget_and_interrupt_keep_the_best_so_far():
    from chaos.archive.shrink import Interrupted

    def run_once(schedule, i):
        if len(schedule) < 3:
            raise Interrupted()
        return "r", 1

    sh = Shrinker(_sched(6, "isolate-leader"), tries=1, budget=600, run_once=run_once)
    best = sh.run()
    assert len(best) == 3 and sh.stopped == "interrupted (Ctrl-C)"
    sh = Shrinker(_sched(6), tries=1, budget=0.0, run_once=run_once)
    assert len(sh.run()) == 6 and sh.stopped == "the --budget ran out"


def test_shrink_steps():
    s = FaultSpec("partition", 10, 14, {"shape": "bridge"})
    assert shorter(s).stop_s == 12 and shorter(FaultSpec("kill", 0, 1.5)) is None
    assert [x.params["shape"] for x in fewer_nodes(s)] == ["isolate-leader", "isolate-one"]
    assert fewer_nodes(FaultSpec("partition", 0, 1, {"shape": "isolate-leader"})) == []
    assert fewer_nodes(FaultSpec("kill", 0, 1)) == []
    moved = compact([FaultSpec("kill", 20, 23), FaultSpec("pause", 30, 31)], 3)
    assert [(m.start_s, m.stop_s) for m in moved] == [(3, 6), (13, 14)]


def test_long_trends_plot_daily_means():
    from chaos.archive.index import RunSummary
    from chaos.archive.trends import MAX_POINTS

    runs = [RunSummary(id=f"t/{i}", test="t", started=f"2026-01-{1 + i // 100:02d}T{i % 24:02d}",
                       verdict="invalid" if i % 2 else "valid", ops_per_s=float(i % 100),
                       anomalies={"lost-write": 2} if i % 2 else {})
            for i in range(MAX_POINTS + 100)]
    s = series(runs)
    ops = s["client ops/s (daily mean)"]["ops/s"]
    assert len(ops) == 5 and all(v == pytest.approx(49.5) for _, v in ops)
    assert all(v == 1.0 for _, v in s["anomalies (daily mean)"]["lost-write"])
    assert [v for _, v in s["detection rate (invalid / decided runs, per day)"]["rate"]] == \
        [0.5] * 5


def test_serve_bad_store_and_busy_port(tmp_path, gen_store):
    import socket

    code, _, err = invoke_cli("serve", "--store", str(tmp_path / "missing"))
    assert code == 4 and "--store" in err and "not a directory" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        code, _, err = invoke_cli("serve", "--store", str(gen_store), "--port", port)
    assert code == 3 and f"--port {port}: cannot listen" in err


def test_server_sees_runs_appended_while_it_serves(tmp_path, gen_store):
    import http.client
    import threading

    from chaos.archive.web import ArchiveServer

    store = _copy(gen_store, tmp_path)
    server = ArchiveServer(store, "127.0.0.1", 0)
    server.index.sync()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def get(path: str, method: str = "GET") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        return resp.status, body

    try:
        assert "24 of 24 runs" in get("/")[1]
        ids = make_store(store, 1, seed=11, start=datetime(2030, 1, 1, tzinfo=timezone.utc))
        status, body = get("/")      # a run finished meanwhile: listed, first (newest)
        assert "25 of 25 runs" in body
        assert body.split('data-id="')[1].split('"')[0] == ids[0]
        assert get(f"/run/{ids[0]}")[0] == 200
        assert get("/run/no-such/20200101T000000")[0] == 404
        assert get("/nowhere")[0] == 404
        status, body = get(f"/files/{ids[0]}/config.json", "HEAD")
        assert status == 200 and body == ""
    finally:
        server.shutdown()
        server.server_close()
