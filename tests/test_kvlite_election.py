"""kvlite vote rules (majority failover), on a real Node object without network traffic."""
from __future__ import annotations

import asyncio
import time

from targets.kvlite import election, follower
from targets.kvlite.node import Node, Options


def make_node(tmp_path, entries_terms=(1, 1, 2)):
    """A follower n1 of a 3-node cluster whose log has entries in the given terms."""
    node = Node("n1", {"n2": ("127.0.0.1", 9), "n3": ("127.0.0.1", 9)}, str(tmp_path),
                Options(failover="majority", replication="quorum", election_timeout_ms=300))
    node.start()
    for t in entries_terms:
        node.append_local({"t": t, "k": "k", "v": t})
    node.set_term(max(entries_terms), None)
    node.started_at -= 1.0          # started long ago (see test_a_restarted_node_waits)
    return node


def vote(node, term, cand, last_index, last_term):
    return election.handle_vote(node, {"op": "vote", "term": term, "candidate": cand,
                                       "last_index": last_index, "last_term": last_term})


def test_votes_only_for_an_up_to_date_log_and_once_per_term(tmp_path):
    async def scenario():
        n = make_node(tmp_path)
        assert not vote(n, 3, "n2", 5, 1)["granted"]        # older last term: behind
        assert not vote(n, 3, "n2", 2, 2)["granted"]        # same term, shorter log: behind
        assert n.term == 3                                  # the higher term is adopted anyway
        assert vote(n, 3, "n3", 3, 2)["granted"]            # as up to date as ours
        assert not vote(n, 3, "n2", 9, 9)["granted"]        # one vote per term
        assert vote(n, 3, "n3", 3, 2)["granted"]            # asking again is fine
        assert n.log.load_meta() == {"term": 3, "voted_for": "n3", "was_leader": False,
                                 "learner": False}
        assert not vote(n, 2, "n2", 9, 9)["granted"]        # stale term
        n.stop()
    asyncio.run(scenario())


def test_a_follower_of_a_live_leader_refuses_votes(tmp_path):
    async def scenario():
        n = make_node(tmp_path)
        follower.heard_from_leader(n, 2, "n2")
        r = vote(n, 5, "n3", 10, 5)
        assert not r["granted"] and n.term == 2             # not even the term is adopted
        n.last_heard = time.monotonic() - 1.0               # the leader went silent
        assert vote(n, 5, "n3", 10, 5)["granted"] and n.term == 5
        n.stop()
    asyncio.run(scenario())


def test_naive_nodes_never_vote(tmp_path):
    async def scenario():
        n = Node("n1", {"n2": ("127.0.0.1", 9)}, str(tmp_path), Options(failover="naive"))
        n.start()
        assert not vote(n, 5, "n2", 10, 5)["granted"]
        n.stop()
    asyncio.run(scenario())


def test_a_restarted_node_waits_an_election_timeout_before_voting(tmp_path):
    async def scenario():
        n = make_node(tmp_path)
        n.started_at = time.monotonic()     # just (re)started: maybe a leader's lease rests on us
        assert not vote(n, 5, "n3", 10, 5)["granted"]
        n.started_at -= 0.31
        assert vote(n, 5, "n3", 10, 5)["granted"]
        n.stop()
    asyncio.run(scenario())


def test_discarding_entries_rebuilds_both_views(tmp_path):
    """A deposed naive leader's applied-but-unreplicated entries disappear from its state."""
    async def scenario():
        n = Node("n1", {}, str(tmp_path), Options(failover="naive", initial_leader="n1"))
        n.start()
        for i in range(3):
            n.append_local({"t": 1, "k": "s", "a": i})
        await n.log.durable()
        n.update_commit()
        assert n.take_snapshot() == 3 and n.log.snapshot_index == 3
        n.append_local({"t": 1, "k": "s", "a": 3})
        n.append_local({"t": 1, "k": "s", "a": 4})
        n.append_local({"t": 1, "k": "r", "v": "x"})
        await n.log.durable()
        n.update_commit()
        assert n.commit_index == 6 and n.state["r"] == "x"
        n.truncate(4, "test")
        assert n.state == {"s": {0, 1, 2, 3}} and n.head == {"s": {0, 1, 2, 3}}
        assert n.commit_index == 4 and n.discarded == 2 and n.log.last_index == 4
        n.stop()
        again = Node("n1", {}, str(tmp_path), Options(failover="naive", initial_leader="n1"))
        again.start()
        assert again.state == {"s": {0, 1, 2, 3}} and again.role == "leader"   # it led: resumes
        again.stop()
    asyncio.run(scenario())
