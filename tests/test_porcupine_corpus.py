"""Porcupine's test corpus: importer edge cases and the linearizability verdict on every file.

Expected verdicts: etcd from shared/corpora/porcupine/expected-etcd.txt (porcupine_test.go),
kv by file name (-ok linearizable, -bad not). The corpus lives in shared/ beside the clone.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from chaos.checkers.linearizable import check_linearizable
from chaos.errors import BadInput, ExitCode
from chaos.history.importers import porcupine

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "porcupine"
needs_corpus = pytest.mark.skipif(not (CORPUS / "expected-etcd.txt").exists(),
                                  reason=f"Porcupine corpus not found at {CORPUS}")


def expected_etcd() -> dict[str, bool]:
    if not (CORPUS / "expected-etcd.txt").exists():
        return {}
    out: dict[str, bool] = {}
    for line in (CORPUS / "expected-etcd.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            n, verdict = line.split()
            out[f"etcd_{int(n):03d}.log"] = verdict == "true"
    return out


ETCD = expected_etcd()
KV = ["c01-ok.txt", "c01-bad.txt", "c10-ok.txt", "c10-bad.txt", "c50-ok.txt", "c50-bad.txt"]


# --- importer -----------------------------------------------------------------------------------

def test_sniff():
    assert porcupine.sniff("\nINFO  jepsen.util - 3\t:invoke\t:read\tnil\n")
    assert porcupine.sniff('{:process 3, :type :invoke, :f :get, :key "9", :value nil}\n')
    assert not porcupine.sniff('{"index": 0, "type": "invoke"}\n')
    assert not porcupine.sniff("{:type :invoke, :f :read, :process 0}\n")  # Jepsen EDN
    assert not porcupine.sniff("")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "h.log"
    p.write_text(text)
    return p


def test_etcd_mapping(tmp_path):
    p = write(tmp_path, "INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2]\n"
                        "INFO  jepsen.util - 1\t:invoke\t:write\t3\n"
                        "INFO  jepsen.util - 0\t:fail\t:cas\t[1 2]\n"
                        "INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n"
                        "INFO  jepsen.util - 6\t:invoke\t:read\tnil\n"
                        "INFO  jepsen.util - 6\t:fail\t:read\t:timed-out\n"
                        "INFO  jepsen.util - 7\t:invoke\t:read\tnil\n"
                        "INFO  jepsen.util - 7\t:ok\t:read\tnil")
    h = porcupine.load(p)
    rows = h.pairs.to_dict("records")
    assert [r["f"] for r in rows] == ["cas", "write", "read", "read"]
    assert rows[0]["value"] == [1, 2] and rows[0]["type"] == "fail"
    assert rows[0]["error"] == "compare-failed"
    assert rows[1]["type"] == "info" and rows[1]["error"] == "timed-out"
    assert rows[2]["type"] == "fail" and rows[2]["error"] == "timed-out"
    assert rows[3]["type"] == "ok" and rows[3]["result"] is None
    assert all(r["key"] is None for r in rows)
    assert [r["invoke_time"] for r in rows] == [0, 1, 4, 6]


def test_kv_mapping(tmp_path):
    p = write(tmp_path, '{:process 3, :type :invoke, :f :get, :key "9", :value nil}\n'
                        '{:process 2, :type :invoke, :f :append, :key "9", :value "x 2 0 y"}\n'
                        '{:process 3, :type :ok, :f :get, :key "9", :value ""}\n'
                        '{:process 2, :type :ok, :f :append, :key "9", :value "x 2 0 y"}\n')
    rows = porcupine.load(p).pairs.to_dict("records")
    assert rows[0]["f"] == "get" and rows[0]["key"] == "9" and rows[0]["result"] == ""
    assert rows[1]["value"] == "x 2 0 y" and rows[1]["complete_time"] == 3


@pytest.mark.parametrize("text, needle, line", [
    ("", "history is empty", None),
    ("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nhello\n", "not a Porcupine etcd", 2),
    ("INFO  jepsen.util - 0\t:ok\t:read\tnil\n", "no open invoke", 1),
    ("INFO  jepsen.util - 0\t:invoke\t:frob\tnil\n", "unknown etcd op", 1),
    ("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n", "bad cas value", 1),
    ('{:process 1, :type :ok, :f :get, :key "1", :value ""}\n', "no open invoke", 1),
    ('{:process 1, :type :invoke, :f :get, :key "1", :value nil}\n{:process 1}\n',
     "not a Porcupine kv", 2),
])
def test_bad_input(tmp_path, text, needle, line):
    p = write(tmp_path, text)
    with pytest.raises(BadInput) as exc:
        porcupine.load(p)
    assert needle in str(exc.value)
    assert exc.value.exit_code == ExitCode.BAD_INPUT
    assert exc.value.where == (f"{p}:{line}" if line else str(p))


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        porcupine.load(tmp_path / "nope.log")


# --- the corpus -------------------------------------------------------------------------------

@needs_corpus
def test_corpus_complete():
    assert len(ETCD) == 102
    assert sum(ETCD.values()) == 23
    with pytest.raises(BadInput, match="history is empty"):
        porcupine.load(CORPUS / "jepsen" / "etcd_095.log")


@needs_corpus
@pytest.mark.parametrize("name", sorted(ETCD))
def test_etcd_verdict(name):
    h = porcupine.load(CORPUS / "jepsen" / name)
    r = check_linearizable(h, {"time_limit": 10})
    assert r.valid is ETCD[name], (r.stats, r.anomalies)
    assert r.stats["undecided"] == []
    if r.valid is False:
        [a] = r.anomalies
        assert a.kind == "nonlinearizable" and a.details["stuck_on"] in a.ops


@needs_corpus
@pytest.mark.parametrize("name", KV)
def test_kv_verdict(name):
    h = porcupine.load(CORPUS / "kv" / name)
    r = check_linearizable(h, {"time_limit": 10})
    assert r.valid is ("-ok" in name), (r.stats, r.anomalies)
    assert r.stats["model"] == "kv"


@needs_corpus
def test_c01_bad_counterexample_is_the_stale_append():
    """EXPECTED.md: only key "7" is violated: a get misses the append "x 0 3 y"."""
    r = check_linearizable(porcupine.load(CORPUS / "kv" / "c01-bad.txt"))
    [a] = r.anomalies
    assert a.key == "7"
    assert a.details["stuck_op"].endswith("-> 'x 0 0 y'")
    assert a.details["state"] == "'x 0 0 yx 0 3 y'"


@needs_corpus
def test_fail_cas_reading_does_not_change_verdicts():
    """EXPECTED.md: Knossos' ':fail = did not happen' gives the same etcd verdicts."""
    wrong = []
    for name, expected in sorted(ETCD.items()):
        h = porcupine.load(CORPUS / "jepsen" / name)
        if check_linearizable(h, {"fail": "ignore", "time_limit": 10}).valid is not expected:
            wrong.append(name)
    assert wrong == []
