"""`chaos analyze`: exit codes, summary, --json, results.json placement, bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from chaos.cli import main
from chaos.cli.analyze import results_path

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
ETCD = HISTORIES.parent.parent / "shared" / "corpora" / "porcupine" / "jepsen"


def run(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(["analyze", *argv])
    out, err = capsys.readouterr()
    return ei.value.code, out, err


@pytest.fixture
def hist(tmp_path):
    """Copy an example history into tmp_path (results.json must not land in the repo)."""
    def copy(name: str, dest: str | None = None) -> Path:
        target = tmp_path / (dest or Path(name).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HISTORIES / name, target)
        return target
    return copy


def test_valid_history_exit_0_and_summary(hist, capsys):
    p = hist("valid-register.jsonl")
    code, out, err = run([str(p)], capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"{p}: valid") and "stale-reads" in out and "linearizable" in out


def test_invalid_history_summary_shows_anomaly_ops_times_explanation(hist, capsys):
    p = hist("stale-follower-read.jsonl")
    code, out, _ = run([str(p)], capsys)
    assert code == 1
    assert f"{p}: INVALID" in out
    assert "- stale-read [key x] at 50.000 ms" in out
    assert "#13" in out and "55.000 ms" in out and "@n3" in out   # the stale read op
    assert "why: " in out and "latency" in out


def test_json_output_and_results_file(hist, capsys):
    p = hist("lost-write-after-failover.jsonl")
    code, out, _ = run(["--json", str(p)], capsys)
    assert code == 1
    doc = orjson.loads(out)
    assert doc["valid"] is False and doc["path"] == str(p) and doc["format"] == "jsonl"
    lost = doc["results"]["lost-writes"]
    assert lost["valid"] is False and lost["anomalies"][0]["kind"] == "lost-write"
    written = orjson.loads(results_path(p).read_bytes())
    assert results_path(p) == p.with_name(p.name + ".results.json")
    assert written == doc


def test_run_directory_results_in_the_directory(hist, capsys, tmp_path):
    hist("valid-set.jsonl", "run1/history.jsonl")
    code, _, _ = run([str(tmp_path / "run1")], capsys)
    assert code == 0
    assert orjson.loads((tmp_path / "run1" / "results.json").read_bytes())["valid"] is True
    # the history file itself, named history.jsonl, also puts results.json beside it
    assert results_path(tmp_path / "run1" / "history.jsonl") == tmp_path / "run1" / "results.json"


def test_no_results_flag_writes_nothing(hist, capsys, tmp_path):
    p = hist("valid-set.jsonl")
    code, _, _ = run(["--no-results", str(p)], capsys)
    assert code == 0 and sorted(x.name for x in tmp_path.iterdir()) == ["valid-set.jsonl"]


def test_never_overwrites_an_input(hist, capsys):
    p = hist("valid-set.jsonl")
    twin = hist("valid-register.jsonl", p.name + ".results.json")
    before = twin.read_bytes()
    code, _, err = run([str(p), str(twin)], capsys)
    assert code == 0
    assert twin.read_bytes() == before
    assert "it is one of the inputs" in err


@pytest.mark.parametrize("names,want", [
    (["valid-set.jsonl", "stale-follower-read.jsonl"], 1),
    (["stale-follower-read.jsonl", "bad/empty.jsonl", "valid-set.jsonl"], 4),
    (["valid-set.jsonl", "valid-register.jsonl"], 0),
])
def test_several_paths_worst_exit_code(hist, capsys, names, want):
    paths = [str(hist(n)) for n in names]
    code, out, err = run(["--no-results", "--json", *paths], capsys)
    assert code == want
    docs = [orjson.loads(line) for line in out.strip().splitlines()]
    assert [d["path"] for d in docs] == paths  # every path is analysed, even after an error


def test_unknown_verdict_exit_2_and_ranking(hist, capsys):
    # perf on a history with no client ops measures nothing: "unknown" (never valid)
    monitor_only = str(hist("two-leaders-same-term.jsonl"))
    valid = str(hist("valid-set.jsonl"))
    invalid = str(hist("stale-follower-read.jsonl"))
    assert run(["--no-results", "--checker", "perf", monitor_only], capsys)[0] == 2
    assert run(["--no-results", "--checker", "perf", monitor_only, valid], capsys)[0] == 2
    code, _, _ = run(["--no-results", "--checker", "perf", "--checker", "stale-reads",
                      monitor_only, invalid], capsys)
    assert code == 1


def test_checker_selection(hist, capsys):
    p = hist("stale-follower-read.jsonl")
    code, out, _ = run(["--no-results", "--json", "--checker", "dual-leaders", str(p)], capsys)
    assert code == 0 and list(orjson.loads(out)["results"]) == ["dual-leaders"]


def test_bad_inputs_exit_4_one_line(hist, capsys, tmp_path):
    cases = {
        str(hist("bad/malformed-line.jsonl")): ":3: bad JSON",
        str(hist("bad/completion-without-invoke.jsonl")): ":3: ok completion of 'read'",
        str(hist("bad/empty.jsonl")): ": history is empty",
        str(tmp_path / "missing.jsonl"): ": no such file",
    }
    for path, needle in cases.items():
        code, out, err = run([path], capsys)
        assert code == 4 and out == ""
        assert err.count("\n") == 1 and err.startswith(f"chaos: error: {path}{needle}"), err


@pytest.mark.parametrize("argv,needle", [
    (["--checker", "nope"], "unknown checker 'nope'"),
    (["--format", "xml"], "xml"),
    (["--time-limit", "0"], "time-limit"),
])
def test_bad_arguments_exit_4(hist, capsys, argv, needle):
    p = hist("valid-set.jsonl")
    code, _, err = run([*argv, str(p)], capsys)
    assert code == 4 and needle in err and "Traceback" not in err


def test_forced_format(hist, capsys):
    p = hist("edn/set-valid.edn")
    assert run(["--no-results", "--format", "jepsen-edn", str(p)], capsys)[0] == 0
    code, _, err = run(["--no-results", "--format", "jsonl", str(p)], capsys)
    assert code == 4 and ":1: bad JSON" in err


@pytest.mark.skipif(not ETCD.exists(), reason="porcupine corpus not present")
def test_porcupine_log(capsys, tmp_path):
    invalid, valid = tmp_path / "etcd_000.log", tmp_path / "etcd_002.log"
    shutil.copy(ETCD / invalid.name, invalid)
    shutil.copy(ETCD / valid.name, valid)
    code, out, _ = run(["--json", "--checker", "linearizable", str(invalid)], capsys)
    assert code == 1 and orjson.loads(out)["format"] == "porcupine"
    assert run(["--checker", "linearizable", str(valid)], capsys)[0] == 0


def test_nothing_to_check_is_unknown_not_valid(tmp_path, capsys):
    p = tmp_path / "nemesis-only.jsonl"
    p.write_bytes(b'{"index":0,"time":0,"process":"nemesis","type":"invoke","f":"kill"}\n'
                  b'{"index":1,"time":5,"process":"nemesis","type":"ok","f":"kill"}\n')
    code, out, _ = run([str(p)], capsys)
    assert code == 2 and "UNKNOWN" in out and "no checker applies" in out


def test_jepsen_txn_history_is_unknown_not_valid(tmp_path, capsys):
    """A workload none of our models understands (Jepsen list-append txns) is never "valid"."""
    p = tmp_path / "txn.edn"
    p.write_text("{:type :invoke, :f :txn, :value [[:r 9 nil] [:append 9 1]], :process 0}\n"
                 "{:type :ok, :f :txn, :value [[:r 9 []] [:append 9 1]], :process 0}\n"
                 "{:type :invoke, :f :read, :value [[:r 9 nil]], :process 1}\n"
                 "{:type :ok, :f :read, :value [[:r 9 [1]]], :process 1}\n")
    code, out, _ = run([str(p)], capsys)
    assert code == 2 and "UNKNOWN" in out and "no checker applies" in out
    assert "stale-reads" not in out and "linearizable" not in out


def test_huge_integers_still_give_json(tmp_path, capsys):
    p = tmp_path / "big.edn"
    p.write_text("{:type :invoke, :f :write, :value 123456789012345678901234567890N, "
                 ":process 0}\n{:type :ok, :f :write, :value 123456789012345678901234567890N, "
                 ":process 0}\n")
    code, out, err = run(["--json", str(p)], capsys)
    assert code in (0, 1, 2) and "Traceback" not in err
    assert orjson.loads(out)["path"] == str(p)


def test_ops_by_index_direct_and_scanned():
    from chaos.history.summary import ops_by_index
    ops = [{"index": i} for i in range(5)]
    assert ops_by_index(ops, [1, 3]) == {1: ops[1], 3: ops[3]}
    shifted = [{"index": i + 100} for i in range(5)]   # an import numbered from 100
    assert ops_by_index(shifted, [101, 2, 999]) == {101: shifted[1]}
