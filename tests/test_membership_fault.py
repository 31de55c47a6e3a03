"""The membership fault: a follower removed from the configuration and added back as a new
member, on real kvlite nodes; the contract's capability and its refusal; removed nodes in
the fault windows (their silence is the fault's, one rule for every checker)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers.evidence import _explained
from chaos.history.faults import NODE_OUT, FaultWindow, classify
from chaos.plugins import validate, with_defaults
from chaos.target import Membership, NoopTarget, optional_faults
from targets.kvlite import config
from targets.kvlite.node import Node, Options
from targets.kvlite.plugin import KvliteTarget
from tests.runhelp import invoke_cli, run_json

PEERS = {"n2": ("127.0.0.1", 1), "n3": ("127.0.0.1", 2)}


def _node(tmp_path: Path) -> Node:
    node = Node("n1", PEERS, str(tmp_path), Options(failover="majority"))
    node.start()
    return node


def test_a_kvlite_configuration_takes_effect_when_appended_and_is_forgotten_when_discarded(
        tmp_path):
    node = _node(tmp_path)
    assert node.voters == ["n1", "n2", "n3"] and node.cluster_size == 3
    node.log.append({"i": 1, "t": 1, "k": 1, "v": 1})
    node.log.append({"i": 2, "t": 1, "cfg": ["n1", "n2"]})
    config.refresh(node)
    assert (node.voters, node.peer_names, node.cluster_size) == (["n1", "n2"], ["n2"], 2)
    node.truncate(1, "test: the configuration entry was never committed")
    assert node.voters == ["n1", "n2", "n3"] and node.peer_names == ["n2", "n3"]


def test_a_kvlite_snapshot_keeps_the_configuration_and_a_restart_reads_it(tmp_path):
    node = _node(tmp_path)
    node.append_local({"t": 1, "cfg": ["n1", "n3"]})
    node.append_local({"t": 1, "k": 1, "v": 1})
    node.advance_commit(2)
    node.take_snapshot()
    assert node.log.entries == [] and node.log.snapshot_config == ["n1", "n3"]
    node.stop()
    again = _node(tmp_path)
    assert again.voters == ["n1", "n3"] and again.cluster_size == 2
    assert again.status()["members"] == ["n1", "n3"]


def test_a_removed_kvlite_node_neither_votes_nor_counts(tmp_path):
    node = _node(tmp_path)
    node.started_at -= 10
    node.append_local({"t": 1, "cfg": ["n2", "n3"]})
    from targets.kvlite import election

    vote = election.handle_vote(node, {"term": 5, "candidate": "n2", "last_index": 9,
                                       "last_term": 1})
    assert vote["granted"] is False


def test_membership_is_an_optional_capability_of_the_contract():
    kv = KvliteTarget()
    assert isinstance(kv.membership, Membership)
    assert "membership" in optional_faults(kv) and "membership" not in kv.faults
    assert "membership" not in optional_faults(NoopTarget())

    class Bad:
        name = "bad"
        membership = object()

        def client(self, endpoints, options):
            return None

        def status(self, node, endpoints, timeout):
            return {}

        def start_command(self, node):
            return ["true"]

    problems = validate(with_defaults(Bad()))
    assert any("membership must be None or an object" in p for p in problems), problems


def test_asking_a_target_without_membership_for_it_is_bad_input_before_anything_starts(
        tmp_path):
    code, _out, err = invoke_cli("run", "--store", str(tmp_path), "--target", "redis",
                                 "--nemesis", "partition,membership", "--time-limit", "2")
    assert code == 4, err
    line = err.strip().splitlines()[-1]
    assert "--nemesis membership" in line and "target redis" in line, line
    assert not list(tmp_path.rglob("history.jsonl"))


def _window(kind: str, node: str, start: int, end: int) -> FaultWindow:
    return FaultWindow(kind, start, end, {"node": node}, (), True)


def test_removed_nodes_are_windows_that_hold_a_node_out():
    assert classify("remove-member") == ("open", "membership")
    assert classify("add-member") == ("close", "membership")
    assert "membership" in NODE_OUT
    removed = [_window("membership", "n1", 0, 100), _window("kill", "n2", 0, 100)]
    assert _explained(10, 90, removed, {"n1", "n2"})
    # must fail: a node neither removed nor killed, or a silence outlasting the window
    assert not _explained(10, 90, removed, {"n1", "n2", "n3"})
    assert not _explained(10, 150, removed, {"n1", "n2"})
    assert not _explained(10, 90, [_window("latency", "n1", 0, 100)], {"n1"})


@pytest.mark.integration
def test_all_on_kvlite_runs_every_combination_and_undoes_every_fault(tmp_path):
    """One run holds every item of kvlite's `all` (the four kinds, partition+clock,
    member+kill, membership+partition): valid, every window closed and verified, the removed
    follower absent from the member list and back in it, caught up."""
    code, doc = run_json("--store", str(tmp_path), "--seed", "3", "--workload", "register",
                         "-O", "replication=quorum", "-O", "failover=majority",
                         "-O", "snapshot_every=100", "--nemesis", "all",
                         "--nemesis-interval", "1", "--time-limit", "14", timeout=300)
    assert code == 0 and doc["valid"] is True and not doc["unverified_faults"], doc
    from chaos.history.faults import fault_windows
    from chaos.history.reader import read_history

    windows = fault_windows(read_history(doc["history"]))
    assert {w.kind for w in windows} >= {"partition", "latency", "kill", "pause", "clock",
                                         "membership"}
    assert all(w.closed and w.verified for w in windows), windows
    ops = [json.loads(line) for line in Path(doc["history"]).read_text().splitlines()]
    done = [op["f"] for op in ops if op.get("process") == "nemesis" and op["type"] == "ok"]
    assert done.count("wipe") == done.count("rejoin") == 1 and done[-1] == "heal"
    changes = [op for op in ops if op.get("f") in ("remove-member", "add-member")
               and op["type"] != "invoke"]
    assert [(op["f"], op["type"]) for op in changes] == [("remove-member", "ok"),
                                                         ("add-member", "ok")]
    removed, added = changes
    node = removed["value"]["node"]
    assert node not in removed["value"]["members"] and removed["value"]["verified"]
    back = added["value"]["nodes"][node]
    assert node in back["members"]
    assert back["caught_up"]["log_position"] >= back["caught_up"]["leader_position"]


@pytest.mark.integration
def test_ctrl_c_while_a_node_is_removed_adds_it_back_and_leaves_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.runhelp import REPO

    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", "--workload", "register", "--nemesis",
         "membership", "--nemesis-interval", "4", "--time-limit", "60", "--seed", "2",
         "--store", str(store), "--quiet", "-O", "replication=quorum", "-O",
         "failover=majority"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        history = None
        deadline = time.monotonic() + 60
        while history is None and time.monotonic() < deadline and proc.poll() is None:
            for h in store.glob("*/*/history.jsonl"):
                if '"type":"ok","f":"remove-member"' in h.read_text():
                    history = h.resolve()
            time.sleep(0.1)
        assert history is not None, "no node was removed"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2 and "Traceback" not in err, (out, err)
    ops = [json.loads(line) for line in history.read_text().splitlines()]
    nem = [op for op in ops if op.get("process") == "nemesis" and op["type"] != "invoke"]
    heal = nem[-1]
    assert heal["f"] == "heal" and heal["type"] == "ok", nem[-3:]
    assert nem[-2]["f"] == "remove-member", nem[-3:]  # interrupted inside the window
    node = nem[-2]["value"]["node"]
    back = heal["value"]["membership"]["nodes"][node]  # the heal added it back, verified
    assert node in back["members"] and back["caught_up"]["log_position"] >= \
        back["caught_up"]["leader_position"]
    run_dir = str(history.parent)
    left = [p for p in os.listdir("/proc") if p.isdigit() and _mentions(p, run_dir)]
    assert left == [], left


def _mentions(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["n1", "n2", "n3"])), max_size=12),
       st.data())
def test_kvlite_configuration_survives_compaction_at_any_index(changes, data):
    """Entries (None: a write; a name: toggle that voter) appended, then a snapshot at any
    committed index: the node's configuration is the same before and after, and after a
    restart from disk (the snapshot carries the configuration at its index)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        node = _node(Path(tmp))
        voters = {"n1", "n2", "n3"}
        expect_at = [sorted(voters)]  # the voters as of each index, 0 = start-up
        for i, change in enumerate(changes, start=1):
            if change is None:
                node.append_local({"t": 1, "k": 1, "v": i})
            else:
                voters ^= {change}
                node.append_local({"t": 1, "cfg": sorted(voters)})
            expect_at.append(sorted(voters))
        assert node.voters == sorted(voters)
        cut = data.draw(st.integers(0, len(changes)))
        seen = config.at(node, cut)
        assert (["n1", "n2", "n3"] if seen is None else seen) == expect_at[cut]
        node.advance_commit(cut)
        node.take_snapshot()
        assert node.voters == sorted(voters)
        node.stop()
        again = _node(Path(tmp))
        assert again.voters == sorted(voters) and again.cluster_size == len(voters)
        again.stop()


class _FlakyMembership:
    """A target whose removal raises after it may have happened (a lost answer)."""

    def __init__(self) -> None:
        self.voters = {"n1", "n2", "n3"}
        self.calls: list[str] = []

    def members(self, cluster, timeout):
        return sorted(self.voters)

    def remove_member(self, cluster, node, timeout):
        self.calls.append(f"remove {node}")
        self.voters.discard(node)
        raise TimeoutError("the answer was lost")

    def add_member(self, cluster, node, timeout):
        self.calls.append(f"add {node}")
        self.voters.add(node)


@pytest.mark.integration
def test_a_removal_that_raised_is_stopped_wiped_and_added_back_by_the_heal(tmp_path):
    import random

    from chaos.faults import get
    from chaos.nemesis import Nemesis, NemesisContext
    from chaos.runtime.local import LocalRuntime
    from chaos.target import Service

    rt = LocalRuntime()
    rt.setup(["n1", "n2"], str(tmp_path))
    cap = _FlakyMembership()
    restarts: list[tuple] = []
    nem = Nemesis(NemesisContext(
        runtime=rt, net=None, nodes=["n1", "n2"], leader=lambda: "n1",
        restart=lambda *a, **k: restarts.append((a, k)), rng=random.Random(1),
        record=lambda op: None, status=lambda n: {"role": "leader", "log_position": 7},
        membership=cap, cluster=lambda: None))
    try:
        rt.start("n2", Service("main", ["sleep", "60"], ready_port=None))
        (tmp_path / "nodes" / "n2" / "log.jsonl").write_text("old data\n")
        with pytest.raises(TimeoutError):
            get("membership").start(nem, {"node": "n2"})
        assert nem.removed == {"n2"} and not rt.is_running("n2")
        assert not (tmp_path / "nodes" / "n2" / "log.jsonl").exists()  # moved aside
        did, problems = get("membership").heal(nem)
        assert problems == [] and cap.calls == ["remove n2", "add n2"]
        assert restarts == [(("n2",), {"rejoin": True})] and nem.removed == set()
        assert did["membership"]["nodes"]["n2"]["members"] == ["n1", "n2", "n3"]
        assert get("membership").heal(nem) == ({}, [])  # nothing left to undo
    finally:
        rt.teardown()


def test_kvlite_asks_a_change_of_unknown_outcome_again_and_raises_a_lasting_refusal(
        monkeypatch):
    """Both changes are idempotent on the nodes, so a leader lost mid-change ("outcome
    unknown") is no reason to give up: the change is asked again of the next leader (which
    says "not committed yet" while its log holds it uncommitted), until it answers ok. A
    refusal that stays true is raised at once."""
    from chaos.target import Cluster
    from targets.kvlite import membership as km

    replies = [{"type": "error", "error": "leadership lost while waiting for replication"},
               {"type": "fail", "error": "the previous configuration change is not "
                                         "committed yet"},
               {"type": "ok", "value": ["n1", "n2", "n3"]}]
    asked: list[str] = []

    def call(addr, msg, timeout):
        asked.append(addr)
        return replies.pop(0)

    leaders = iter(["n1", "n2", "n2"])
    monkeypatch.setattr(km, "call", call)
    monkeypatch.setattr(km, "_leader", lambda cluster, timeout: (next(leaders), {}))
    cluster = Cluster(nodes=["n1", "n2", "n3"],
                      endpoints={"n1": "a1", "n2": "a2", "n3": "a3"}, options={},
                      run=lambda *a: None, data_dir=lambda node: "")  # type: ignore[arg-type]
    km.KvliteMembership().add_member(cluster, "n3", 5)
    assert asked == ["a1", "a2", "a2"] and not replies
    replies.append({"type": "fail", "error": "unknown node 'n9'"})
    monkeypatch.setattr(km, "_leader", lambda cluster, timeout: ("n1", {}))
    with pytest.raises(RuntimeError, match="unknown node"):
        km.KvliteMembership().add_member(cluster, "n9", 5)
