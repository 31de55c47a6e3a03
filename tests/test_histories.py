"""Every example history in histories/ gets the verdict its README table promises."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import orjson
import pytest

from chaos.cli import main

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
ROW = re.compile(r"^\|\s*([\w./-]+\.(?:jsonl|edn|log|txt))\s*\|.*\|\s*(\d)\s*\|\s*$")


def expected() -> dict[str, int]:
    """file (relative to histories/) -> exit code, from the README table."""
    out = {}
    for line in (HISTORIES / "README.md").read_text().splitlines():
        m = ROW.match(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


EXPECTED = expected()


def run(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    out, err = capsys.readouterr()
    return ei.value.code, out, err


def test_table_lists_every_history_file():
    files = {str(p.relative_to(HISTORIES)) for p in HISTORIES.rglob("*")
             if p.is_file() and p.suffix in (".jsonl", ".edn", ".log", ".txt")
             and not p.name.endswith(".results.json")}
    assert files == set(EXPECTED), "histories/README.md table and the files disagree"
    assert len(EXPECTED) >= 10


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_history_verdict(name, tmp_path, capsys):
    src = HISTORIES / name
    copy = tmp_path / src.name
    shutil.copy(src, copy)  # results.json goes beside the history: keep the repo clean
    code, out, err = run(["analyze", "--json", str(copy)], capsys)
    want = EXPECTED[name]
    assert code == want, f"{name}: exit {code}, expected {want}\n{out}\n{err}"
    doc = orjson.loads(out.strip().splitlines()[-1])
    if want == 4:
        line = err.strip().splitlines()
        assert len(line) == 1 and line[0].startswith(f"chaos: error: {copy}"), err
        assert "Traceback" not in err and doc["exit_code"] == 4
        return
    assert doc["valid"] == {0: True, 1: False, 2: "unknown"}[want]
    assert (tmp_path / (copy.name + ".results.json")).is_file()
    if want == 1:
        anomalies = [a for r in doc["results"].values() for a in r["anomalies"]
                     if a["severity"] == "anomaly"]
        assert anomalies and all(a["ops"] for a in anomalies)


def test_expected_checker_catches_each_anomaly(tmp_path, capsys):
    """Each invalid example is judged invalid by the checker it is about, not another."""
    about = {"stale-follower-read.jsonl": "stale-reads",
             "lost-write-after-failover.jsonl": "lost-writes",
             "two-leaders-same-term.jsonl": "dual-leaders",
             "split-brain-writes.jsonl": "dual-leaders",
             "edn/register-independent-stale.edn": "stale-reads",
             "edn/set-lost.edn": "lost-writes"}
    for name, checker in about.items():
        code, out, _ = run(["analyze", "--no-results", "--json", str(HISTORIES / name)], capsys)
        doc = orjson.loads(out)
        assert code == 1 and doc["results"][checker]["valid"] is False, name
