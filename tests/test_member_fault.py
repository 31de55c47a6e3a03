"""The member fault: a wiped kvlite follower rejoins as a learner, bootstraps from a snapshot
and is verified caught up; a rejoin that cannot be verified leaves the fault unverified."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from chaos.faults.member import caught_up
from chaos.nemesis import Nemesis, NemesisContext
from targets.kvlite import election
from targets.kvlite.node import Node, Options
from tests.runhelp import run_json


def _node(tmp_path: Path, **opts) -> Node:
    node = Node("n1", {"n2": ("127.0.0.1", 1), "n3": ("127.0.0.1", 2)}, str(tmp_path),
                Options(failover="majority", **opts))
    node.start()
    node.started_at -= 10  # past the start-up vote embargo
    return node


@pytest.mark.parametrize("rejoin,granted", [(True, False), (False, True)])
def test_a_rejoined_kvlite_node_does_not_vote_until_caught_up(tmp_path, rejoin, granted):
    node = _node(tmp_path, rejoin=rejoin)
    assert node.learner is rejoin and node.status()["learner"] is rejoin
    vote = election.handle_vote(node, {"term": 5, "candidate": "n2", "last_index": 0,
                                       "last_term": 0})
    assert vote["granted"] is granted
    # the learner state survives a restart without --rejoin (a kill during the catch-up)
    node.log.close()
    again = Node("n1", {"n2": ("127.0.0.1", 1), "n3": ("127.0.0.1", 2)}, str(tmp_path),
                 Options(failover="majority"))
    again.start()
    assert again.learner is rejoin


class _Status:
    def __init__(self, answers):
        self.answers = answers

    def __call__(self, node):
        return self.answers[node]


def _nemesis(status) -> Nemesis:
    return Nemesis(NemesisContext(runtime=None, net=None, nodes=["n1", "n2", "n3"],
                                  leader=lambda: "n1", restart=lambda *a, **k: None,
                                  rng=random.Random(1), record=lambda op: None, status=status))


def test_catch_up_is_verified_only_when_the_position_reaches_the_leaders():
    leader = {"role": "leader", "log_position": 40}
    seen, problem = caught_up(_nemesis(_Status({"n1": leader, "n2": {
        "role": "follower", "log_position": 41}})), "n2", timeout=2)
    assert problem is None and seen["log_position"] == 41 and seen["leader_position"] == 40
    seen, problem = caught_up(_nemesis(_Status({"n1": leader, "n2": {
        "role": "follower", "log_position": 39}})), "n2", timeout=0.5)
    assert problem and "did not catch up" in problem
    _seen, problem = caught_up(_nemesis(_Status({"n1": {"role": "leader"}})), "n2",
                               timeout=0.5)
    assert problem and "has no log_position" in problem


@pytest.mark.integration
@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_wiped_kvlite_follower_rejoins_from_a_snapshot_and_catches_up(tmp_path, runtime):
    code, doc = run_json("--store", str(tmp_path), "--seed", "4", "--workload", "register",
                         "--runtime", runtime,
                         "-O", "replication=quorum", "-O", "failover=majority",
                         "-O", "snapshot_every=100", "--nemesis", "member",
                         "--nemesis-interval", "2", "--time-limit", "4", timeout=300)
    assert code == 0 and not doc["unverified_faults"], doc
    ops = [json.loads(line) for line in Path(doc["history"]).read_text().splitlines()]
    wipe, rejoin = [op for op in ops if op.get("f") in ("wipe", "rejoin") and op["type"] == "ok"]
    node = wipe["value"]["node"]
    assert wipe["value"]["moved_aside"] > 0 and wipe["value"]["chosen"] == "follower"
    caught = rejoin["value"]["caught_up"][node]
    assert caught["log_position"] >= caught["leader_position"] > 100
    node_log = (Path(doc["run_dir"]) / "nodes" / node / "node.log").read_text()
    assert "installing snapshot" in node_log and "a voter again" in node_log
    if runtime == "local":  # the data dir is in the run directory: what was moved aside too
        assert list((Path(doc["run_dir"]) / "nodes" / node / ".chaos-wiped").iterdir())


def test_a_rejoined_node_that_leads_is_caught_up_when_it_reaches_the_others():
    """The wiped node caught up and won an election before the check: the goal is the
    highest position of the other nodes (a node down has no say), not a check of itself."""
    me = {"role": "leader", "log_position": [3, 50]}
    nem = Nemesis(NemesisContext(runtime=None, net=None, nodes=["n1", "n2", "n3"],
                                 leader=lambda: "n2", restart=lambda *a, **k: None,
                                 rng=random.Random(1), record=lambda op: None,
                                 status=_Status({"n1": {"log_position": [2, 48]}, "n2": me,
                                                 "n3": {"log_position": [3, 50]}})))
    seen, problem = caught_up(nem, "n2", timeout=2)
    assert problem is None and seen["leader"] == "n2" and seen["leader_position"] == [3, 50]
    # ahead of it: not caught up, however long it leads
    nem.ctx.status = _Status({"n1": {"log_position": [3, 51]}, "n2": me, "n3": {}})
    seen, problem = caught_up(nem, "n2", timeout=0.5)
    assert problem and "did not catch up" in problem and seen["leader_position"] == [3, 51]


def test_a_follower_is_picked_once_a_leader_is_known():
    """Right after a kill no leader may be known: the member fault waits for one instead of
    wiping a node at random (which may be the next leader)."""
    answers = iter([None, None, None, "n1"])
    nem = Nemesis(NemesisContext(runtime=None, net=None, nodes=["n1", "n2", "n3"],
                                 leader=lambda: next(answers, "n1"),
                                 restart=lambda *a, **k: None, rng=random.Random(1),
                                 record=lambda op: None))
    node, why = nem.pick("follower", wait_s=5)
    assert node != "n1" and why == "follower"
    nem.ctx.leader = lambda: None
    node, why = nem.pick("follower", wait_s=0.3)
    assert why == "random (no leader known within 0.3 s)"
    assert nem.pick("follower")[1] == "random (no leader known)"  # no wait asked: at once


def test_no_node_is_wiped_while_another_is_out_of_the_membership():
    from chaos.faults import get

    nem = _nemesis(_Status({}))
    nem.removed.add("n3")
    with pytest.raises(RuntimeError, match="n3 is out of the membership"):
        get("member").start(nem, {"node": "follower"})
    assert nem.killed == set()  # refused before anything was done
