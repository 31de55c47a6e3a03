"""The report of a big history (chaos.report.sample): exact counts and throughput from one
streaming pass, a bounded sample for the latency plot, the page saying it is sampled; and
the sampled page in a real browser (headless chromium)."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

import chaos.report as report
from chaos.checkers import run_checkers, select_checkers
from chaos.history.reader import read_history
from chaos.report import _history_summary, render_file
from chaos.report.plots import ClientOps
from chaos.report.results import results_document
from chaos.report.sample import sample_history

ROOT = Path(__file__).resolve().parents[1]
HISTORIES = sorted((ROOT / "histories").glob("*.jsonl"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
def test_sample_counts_equal_the_whole_history(path: Path) -> None:
    h = read_history(path)
    ops = ClientOps.from_history(h)
    want = _history_summary(h, ops)
    s = sample_history(path, max_points=7)
    got = s.summary()
    for k in ("lines", "operations", "client", "nemesis", "monitor", "by_f", "duration_s"):
        assert got[k] == want[k], k
    tput = s.throughput_ops()
    assert tput.weight is not None
    for typ in ("ok", "fail", "info"):  # every completion counted, none sampled
        done = int((~np.isnan(ops.complete_s) & (ops.type == typ)).sum())
        assert int(tput.weight[tput.type == typ].sum()) == done, typ
    lat = s.latency_ops()
    assert len(lat) == min(7, len(ops))
    rare = int((ops.type != "ok").sum())
    assert int((lat.type != "ok").sum()) == min(rare, 7)  # fail/info first


def big_run(tmp: Path, lines: int) -> Path:
    """A run directory with a generated register history and its results.json."""
    spec = importlib.util.spec_from_file_location("gen_history",
                                                  ROOT / "benchmarks" / "gen_history.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rundir = tmp / "run"
    rundir.mkdir()
    mod.main(["--workload", "register", "--lines", str(lines), "--out",
              str(rundir / "history.jsonl")])
    h = read_history(rundir / "history.jsonl")
    doc = results_document(run_checkers(h, select_checkers(h, None)), history=h,
                           path=str(rundir / "history.jsonl"), fmt="jsonl")
    (rundir / "results.json").write_text(json.dumps(doc, default=str))
    return rundir


@pytest.mark.integration
def test_sampled_report_in_a_real_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from tests.test_serve_browser import CHROMEDRIVER, CHROMIUM
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        pytest.skip("no chromium/chromedriver here")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    rundir = big_run(tmp_path, 20_000)
    monkeypatch.setattr(report, "SAMPLE_ABOVE", 5_000)
    monkeypatch.setattr(report.sample_history, "__defaults__", (frozenset(), 2_000, 0))
    out = render_file(rundir / "history.jsonl", json.loads((rundir / "results.json")
                                                           .read_text()), rundir / "report.html")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(out.resolve().as_uri())
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "this report is sampled" in body and "20,000 lines" in body
        assert "2,000 of" in body  # the latency caption says how many points it shows
        imgs = driver.find_elements(By.TAG_NAME, "img")
        assert len(imgs) >= 2
        for img in imgs:  # every plot decoded and drawn
            assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
    finally:
        driver.quit()
