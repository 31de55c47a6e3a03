"""`chaos run`: bad input exits 4 with nothing started; --replay repeats config and schedule."""
from __future__ import annotations

import json

import pytest

from tests.runhelp import chaos, invoke_cli, run_json

pytestmark = pytest.mark.integration  # every test runs `chaos run` in a subprocess


@pytest.mark.parametrize("args, message", [
    (["--target", "nope"], "unknown target 'nope'"),
    (["--nemesis", "flood"], "unknown nemesis 'flood'"),
    (["--workload", "bank"], "bank"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--time-limit", "-5"], "--time-limit must be positive"),
    (["--nodes", "0"], "--nodes must be at least 1"),
    (["--runtime", "moon"], "unknown runtime 'moon'"),
    (["-O", "replication=fast"], "replication"),
    (["-O", "colour=blue"], "colour"),
    (["--partition-shape", "triangle"], "triangle"),
    (["--workload", "set", "-W", "adds_per_key=0"], "-W adds_per_key: must be >= 1"),
    (["--workload", "set", "-W", "colour=blue"], "-W colour: the set workload has no such"),
    (["-W", "keys"], "-W 'keys': expected key=value"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_input_exits_4_and_starts_nothing(tmp_path, args, message):
    """In-process (the CLI's own exit-code handling through click's runner): a subprocess per
    case cost ~1-7 s each; the subprocess path is tested once below."""
    store = tmp_path / "store"
    code, _out, err = invoke_cli("run", "--store", str(store), *args)
    assert code == 4, err
    assert message in err
    assert "Traceback" not in err
    assert not store.exists()  # nothing started, nothing written


def test_bad_input_in_a_real_process_exits_4_and_starts_nothing(tmp_path):
    store = tmp_path / "store"
    res = chaos("run", "--store", str(store), "--workload", "set", "-W", "colour=blue",
                timeout=60)
    assert res.returncode == 4, (res.stdout, res.stderr)
    assert "-W colour: the set workload has no such" in res.stderr
    assert "Traceback" not in res.stderr
    assert not store.exists()


def test_replay_repeats_config_and_schedule(tmp_path):
    code, doc = run_json("--store", str(tmp_path / "a"), "--workload", "set",
                         "--nemesis", "kill,pause", "--time-limit", "6",
                         "--nemesis-interval", "1", "--seed", "5",
                         "--quiesce", "0.5", "-O", "replication=quorum", "-O", "failover=majority")
    assert code in (0, 1, 2), doc
    def run_dir(store):
        return next(p.parent.resolve() for p in store.glob("*/*/config.json")
                    if "latest" not in p.parts)
    run_a = run_dir(tmp_path / "a")
    code_b, doc_b = run_json("--store", str(tmp_path / "b"), "--replay", str(run_a))
    run_b = run_dir(tmp_path / "b")
    cfg_a = json.loads((run_a / "config.json").read_text())["config"]
    cfg_b = json.loads((run_b / "config.json").read_text())["config"]
    for key in ("seed", "schedule", "target_options", "workload", "nemesis", "time_limit"):
        assert cfg_a[key] == cfg_b[key], key
    assert len(cfg_a["schedule"]) == 3
    # The replayed run did the same faults, in the same order.
    def faults(run):
        ops = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        return [o["f"] for o in ops if o["process"] == "nemesis" and o["type"] == "invoke"]
    assert faults(run_a) == faults(run_b)


def test_replay_of_a_missing_dir_is_bad_input(tmp_path):
    res = chaos("run", "--replay", str(tmp_path / "nothing"), timeout=60)
    assert res.returncode == 4 and "no config.json" in res.stderr


def test_set_run_rotates_keys_and_reads_each_key_on_each_node(tmp_path):
    """End to end through `chaos run`: the set workload's adds spread over keys with at most
    adds_per_key (-W adds_per_key=64: 8 per slot) each, one final read per key per node
    holding the key's acknowledged adds and nothing of another key; the safe kvlite
    configuration without faults is valid."""
    code, doc = run_json("--store", str(tmp_path), "--workload", "set", "--nemesis", "none",
                         "-W", "adds_per_key=64",
                         # 2 s at full speed: ~8k adds over ~130 keys here (>= 3 needed)
                         "--time-limit", "2", "--rate", "0", "--concurrency", "8",
                         "--quiesce", "0.5", "-O", "replication=quorum",
                         "-O", "failover=majority")
    assert code == 0, doc
    hist = next(p for p in tmp_path.glob("*/*/history.jsonl") if "latest" not in p.parts)
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    adds = [o for o in ops if o["f"] == "add" and o["type"] == "invoke"]
    per_key: dict[str, int] = {}
    for o in adds:
        per_key[o["key"]] = per_key.get(o["key"], 0) + 1
    assert len(per_key) >= 3 and max(per_key.values()) <= 64, per_key
    cfg = json.loads((hist.parent / "config.json").read_text())["config"]
    assert cfg["workload_options"] == {"adds_per_key": "64"}  # kept for --replay
    finals = [o for o in ops if o.get("final") and o["type"] == "ok"]
    assert sorted((o["key"], o["node"]) for o in finals) == sorted(
        (k, n) for k in per_key for n in ("n1", "n2", "n3"))
    acked = {o["value"]: o["key"] for o in ops if o["f"] == "add" and o["type"] == "ok"}
    tried = {o["value"]: o["key"] for o in adds}
    for o in finals:  # every acked add of the key, nothing of another key (info may be in)
        assert {e for e, k in acked.items() if k == o["key"]} <= set(o["value"])
        assert all(tried.get(e) == o["key"] for e in o["value"])
    stats = doc["results"]["lost-writes"]["stats"]
    assert stats["keys"] == len(per_key) and stats["lost"] == 0
