"""Shards checked by several processes (chaos.checkers.shard_pool) against the in-memory
checkers, the oracle: same verdicts, counts and anomalies as one process, including a
history with invalid keys in shards that different processes check.

The quick tests deal the shards out as for N processes but run the shares in turn in this
process (no fork: chaos.history.forked), so the dealing, the merge in shard order and the
demotion of later invalid keys are checked without processes; the integration ones fork."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import chaos.history.forked as forked
from chaos.checkers.base import Anomaly, CheckResult
from chaos.checkers.shard_pool import ShardOutcome, deal, demote_later_invalid
from chaos.checkers.sharded import analyze_path
from chaos.history.stream import Split, split_history
from chaos.report.results import results_document
from tests.test_pieces import gen, same_stats, small_blocks  # noqa: F401 - a fixture
from tests.test_sharded import HISTORIES, _norm, oracle


def doc(path: Path, n: int, check_workers: int, piece_ops: int = 100_000) -> dict[str, Any]:
    out, digest = analyze_path(path, None, {}, n_shards=n, workers=1, piece_ops=piece_ops,
                               check_workers=check_workers)
    return _norm(results_document(out, history=digest, path=str(path), fmt="jsonl"))


def stale_keys(path: Path, keys: list[str]) -> Path:
    """The history with, in each of `keys`, one late ok read returning the key's first ok
    write: a stale read, not linearizable, in every one of those keys."""
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    for key in keys:
        ops = [op for op in lines if op.get("key") == key]
        early = next(op["value"] for op in ops if op.get("f") == "write" and op["type"] == "ok")
        late = [op for op in ops if op.get("f") == "read" and op["type"] == "ok"]
        late[-3]["value"] = early
    out = path.with_name(path.stem + "-stale-" + "-".join(keys) + ".jsonl")
    out.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in lines))
    return out


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked, "can_fork", lambda: False)


def test_deal_keeps_a_keys_pieces_together() -> None:
    split = Split(source="x", n_shards=12, directory=Path("."), base_shards=4,
                  shard_rows=[5, 0, 7, 1, 5, 3, 0, 0, 5, 0, 0, 0])
    shares = deal(split, 2)
    assert sorted(i for s in shares for i in s) == [0, 2, 3, 4, 5, 8]
    for s in shares:
        assert s == sorted(s)
        bases = {i % 4 for i in s}
        assert all(i in s for i in (0, 2, 3, 4, 5, 8) if i % 4 in bases)
    assert deal(split, 1) == [[0, 2, 3, 4, 5, 8]]


@pytest.mark.parametrize("rows, want", [
    ([10] * 5, 3),  # 5 equal keys: 3 : 2 on two processes, 2 : 2 : 1 on three (2.5)
    ([10] * 4, 2),  # 2 : 2 already even
    ([10] * 2, 2),
    ([50, 10, 10, 10, 10], 2),  # one big key sets the wall time: more processes gain nothing
    ([10] * 9, 3),  # 5 : 4 on two (5), 3 : 3 : 3 on three (4.5)
    ([10] * 40, 2),  # many keys deal evenly on the cores
])
def test_workers_even_out_the_groups(monkeypatch: pytest.MonkeyPatch, rows: list[int],
                                     want: int) -> None:
    """One process per core, or more (at most two per core) where whole groups would leave
    one core with much more work: the wall time is then all the work over the cores."""
    from chaos.checkers import shard_pool
    monkeypatch.setattr(shard_pool, "cores", lambda: 2)
    monkeypatch.setattr(shard_pool, "can_fork", lambda: True)
    split = Split(source="x", n_shards=len(rows), directory=Path("."),
                  shard_rows=[r * 100_000 for r in rows])
    split.ops = sum(split.shard_rows)
    assert shard_pool.default_workers(split) == want
    shares = deal(split, want)
    assert sorted(i for s in shares for i in s) == list(range(len(rows)))


def test_later_invalid_keys_are_not_finished() -> None:
    """Only the first invalid key by shard order stays invalid (one search stops there)."""
    def lin(valid: Any, key: str | None = None) -> ShardOutcome:
        anomalies = [Anomaly(kind="nonlinearizable", message="", ops=[1], key=key)] if key else []
        r = CheckResult("linearizable", valid, anomalies=anomalies,
                        stats={"keys": 1, "ops": 3, "keys_invalid": int(valid is False),
                               "skipped_keys": []})
        return ShardOutcome(0, results={"linearizable": r})
    got = demote_later_invalid([lin(True), lin(False, "a"), lin(True), lin(False, "b")])
    assert [o.results["linearizable"].valid for o in got] == [True, False, True, "unknown"]
    last = got[3].results["linearizable"]
    assert last.anomalies == [] and last.stats["keys_invalid"] == 0
    assert last.stats["skipped_keys"] == ["b"] and last.stats["ops"] == 3


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
def test_every_stored_history_same_verdict_shares_in_turn(path: Path, no_fork: None) -> None:
    assert doc(path, 5, 3) == oracle(path)


@pytest.mark.usefixtures("small_blocks", "no_fork")
@pytest.mark.parametrize("seed", [1, 2])
def test_cut_keys_checked_in_shares_same_as_in_memory(tmp_path: Path, seed: int) -> None:
    path = gen(tmp_path, 6000, seed, keys=4)
    assert same_stats(doc(path, 2, 2, piece_ops=200)) == same_stats(oracle(path))
    for keys in (["k0"], ["k1", "k3"], ["k0", "k1", "k2", "k3"]):
        bad = stale_keys(path, keys)
        want = same_stats(oracle(bad))
        assert want["results"]["linearizable"]["valid"] is False
        assert len(want["results"]["linearizable"]["anomalies"]) == 1
        assert same_stats(doc(bad, 2, 2, piece_ops=200)) == want
        assert same_stats(doc(bad, 4, 3, piece_ops=200)) == want


def test_keys_of_one_reader_fill_the_shards_in_turn(tmp_path: Path) -> None:
    """Read by one process, a register history's keys go to the shards in turn, so a
    process per core has a key to check."""
    path = gen(tmp_path, 4000, 1, keys=4)
    split = split_history(path, tmp_path / "s", n_shards=4, workers=1,
                          cuttable=frozenset({"read", "write", "cas"}))
    assert all(split.shard_rows[:4])


@pytest.mark.integration
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
def test_every_stored_history_same_verdict_checked_in_processes(path: Path) -> None:
    assert doc(path, 5, 2) == oracle(path)


@pytest.mark.integration
@pytest.mark.usefixtures("small_blocks")
def test_invalid_keys_in_two_processes_same_as_in_memory(tmp_path: Path) -> None:
    path = gen(tmp_path, 6000, 3, keys=4)
    assert same_stats(doc(path, 4, 2, piece_ops=300)) == same_stats(oracle(path))
    for keys in (["k2"], ["k0", "k1", "k2", "k3"]):
        bad = stale_keys(path, keys)
        assert same_stats(doc(bad, 4, 2, piece_ops=300)) == same_stats(oracle(bad))


def failing_tail(path: Path, seconds: float) -> Path:
    """The history slowed 100 times (0.4 s of load become 40 s) with every client op
    invoked in its last `seconds` of load completing as a fail instead of ok."""
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    for op in lines:
        op["time"] *= 100
    last = max(op["time"] for op in lines
               if type(op.get("process")) is int and op["type"] == "invoke")
    invoked: dict[int, int] = {}
    for op in lines:
        p = op.get("process")
        if type(p) is not int:
            continue
        if op["type"] == "invoke":
            invoked[p] = op["time"]
        elif op["type"] == "ok" and invoked[p] >= last - seconds * 1e9:
            op["type"] = "fail"
    out = path.with_name(path.stem + f"-tail-{seconds:g}.jsonl")
    out.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in lines))
    return out


@pytest.mark.usefixtures("small_blocks", "no_fork")
def test_a_failing_tail_is_seen_when_shares_merge_their_facts(tmp_path: Path) -> None:
    """Keys cut into pieces and dealt to 3 shares, each merging its shards' client facts as
    it goes (a piece's own last seconds are dropped by the next): a load whose last 6 s all
    failed is unknown with the same reason as in memory, and a load whose last 4 s failed
    is not (the default tail is 5 s)."""
    path = gen(tmp_path, 6000, 5, keys=4)
    for seconds, stopped in ((6.0, True), (4.0, False)):
        bad = failing_tail(path, seconds)
        want = same_stats(oracle(bad))
        said = any("stopped serving clients" in r for r in want["reasons"])
        assert said is stopped, want["reasons"]
        assert same_stats(doc(bad, 4, 3, piece_ops=200)) == want
