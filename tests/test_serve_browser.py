"""`chaos serve` in a real browser: Debian's headless chromium driven by selenium.

A real `chaos serve` process on a generated store (tests/storegen.py): the run list, a
filter, opening a report, the trends page with its plots, and files outside the store refused
(over raw HTTP too, where no browser normalises the `..` away first).
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import wait_for
from tests.runhelp import REPO
from tests.storegen import make_store

pytestmark = pytest.mark.integration

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, store, the secret file beside it) of a `chaos serve` on 40 runs."""
    root = tmp_path_factory.mktemp("serve")
    store = root / "store"
    make_store(store, 40, seed=5)
    secret = root / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    os.symlink(secret, store / "escape.txt")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(root / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "serve", "--store", str(store),
                             "--port", "0"], stdout=log, stderr=subprocess.STDOUT, env=env)

    def url() -> str | None:
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", (root / "serve.log").read_text())
        return m.group(1) if m else None

    try:
        base = wait_for(url, 30, "chaos serve's URL line")
        yield base, store, secret
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        pytest.skip("no chromium/chromedriver here (Debian packages chromium, chromium-driver: "
                    "`chaos doctor --install` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _rows(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#runs tr.run")


def test_run_list_filter_and_report(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, store, _ = served
    browser.get(base + "/")
    assert len(_rows(browser)) == 40
    assert "40 of 40 runs" in browser.find_element(By.ID, "count").text
    # the list is newest first: the first row is the last run made
    first = _rows(browser)[0].find_element(By.CSS_SELECTOR, "a.open").text
    assert first.endswith("/20260102T150000")
    # filter: invalid runs of etcd only
    Select(browser.find_element(By.ID, "verdict")).select_by_value("invalid")
    Select(browser.find_element(By.ID, "target")).select_by_value("etcd")
    browser.find_element(By.ID, "apply").click()
    wait_for(lambda: "verdict=invalid" in browser.current_url, 10, "the filtered page")
    rows = _rows(browser)
    assert rows, "the generated store has invalid etcd runs"
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        assert cells[1].text == "invalid" and cells[3].text == "etcd"
    expected = sum(1 for p in store.glob("etcd-*/*/results.json")
                   if '"valid": false' in p.read_text())
    assert len(rows) == expected
    # open a run, then its report, one click each
    run_id = rows[0].get_attribute("data-id")
    rows[0].find_element(By.CSS_SELECTOR, "a.open").click()
    wait_for(lambda: browser.find_elements(By.ID, "files"), 10, "the run page")
    assert browser.find_element(By.ID, "verdict").text == "invalid"
    links = {a.text: a for a in browser.find_elements(By.CSS_SELECTOR, "#files a")}
    assert {"report.html", "history.jsonl", "config.json", "nodes/n1/node.log"} <= set(links)
    links["report.html"].click()
    wait_for(lambda: browser.find_elements(By.ID, "report"), 10, "the report")
    assert browser.find_element(By.ID, "report").text == f"report of {run_id}"


def test_trends_page_plots(served, browser):
    from selenium.webdriver.common.by import By

    base, _, _ = served
    browser.get(base + "/trends")
    links = browser.find_elements(By.CSS_SELECTOR, "a.trend")
    assert len(links) == 4
    naive = next(a for a in links if "failover=naive" in a.text)
    naive.click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.chart"), 10, "the charts")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 4
    titles = [c.get_attribute("aria-label") for c in charts]
    assert titles[0].startswith("detection rate") and "latency ms (per run)" in titles
    ops = charts[titles.index("client ops/s (per run)")]
    assert len(ops.find_elements(By.TAG_NAME, "circle")) == 10  # 40 runs, 4 configurations
    assert charts[0].size["width"] > 100   # drawn, not an empty element


def test_files_outside_the_store_are_refused(served, browser):
    from selenium.webdriver.common.by import By

    base, _, secret = served
    browser.get(base + "/files/escape.txt")
    assert "TOP-SECRET" not in browser.page_source
    assert "no such file" in browser.find_element(By.ID, "message").text
    host, port = base.removeprefix("http://").split(":")
    rel = os.path.relpath(secret, "/")
    for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt",
                 f"/files/{secret}", f"/files//{rel}", "/files/escape.txt",
                 "/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                 "/run/../../secret.txt", "/../secret.txt"):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)   # sent as is: no client-side normalisation
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status in (403, 404), path
        assert b"TOP-SECRET" not in body and b"root:" not in body, path
