"""Membership: which nodes are voters, kept as configuration entries in the replicated log.

Raft's single-server changes. The leader appends {"t", "cfg": [voter names]}; every node
uses the LATEST configuration in its log, committed or not (a configuration takes effect
when appended, and a truncated one is forgotten with its entry); the snapshot keeps the
configuration at its index. Without a cfg entry the configuration is every node the
process was started with. Why it is safe: each configuration differs from the one before by
one node, so any majority of the old overlaps any majority of the new; the leader takes a
change only when the previous one is committed and an entry of its own term is committed
(the fix for the single-server-change bug found after Raft's paper), and it answers only once
the change is committed.

What a configuration changes: the leader replicates to the voters only and counts its
commits and its lease over them (`Node.peer_names`, `Node.cluster_size`); candidates ask and
count the voters; a node outside the configuration neither campaigns nor votes. A node added
back after a wipe starts as a learner (--rejoin): it is a voter in the configuration, but
its acks count for nothing until it caught up (follower._caught_up), so its amnesia never
decides a commit or an election.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import replication

if TYPE_CHECKING:
    from .node import Node


def latest(node: "Node") -> tuple[int, list[str]]:
    """(index, voters) of the newest configuration in the node's log or snapshot; index 0:
    the start-up configuration (every node)."""
    for e in reversed(node.log.entries):
        if "cfg" in e:
            return int(e["i"]), list(e["cfg"])
    snap = node.log.snapshot_config
    if snap is not None:
        return node.log.snapshot_index, list(snap)
    return 0, sorted([node.name, *node.all_peers])


def at(node: "Node", index: int) -> list[str] | None:
    """The voters as of `index` (for a snapshot taken there); None: the start-up set."""
    base = node.log.snapshot_index
    for e in reversed(node.log.entries[:max(0, index - base)]):
        if "cfg" in e:
            return list(e["cfg"])
    return node.log.snapshot_config


def refresh(node: "Node") -> None:
    """Adopt the newest configuration: voting peers, cluster size, and (leading) one
    replicator per voting peer."""
    index, voters = latest(node)
    if (index, voters) == (node.config_index, node.voters):
        return
    old = set(node.peer_names)
    node.config_index, node.voters = index, voters
    node.peer_names = sorted(v for v in voters if v != node.name and v in node.links)
    node.cluster_size = len(voters)
    if old != set(node.peer_names):
        node.note(f"configuration at index {index}: voters {', '.join(voters)}")
    if node.role != "leader":
        return
    for p in sorted(old - set(node.peer_names)):
        r = node.replicators.pop(p, None)
        if r is not None:
            r.stop()
    for p in node.peer_names:
        if p not in node.replicators:
            r = replication.Replicator(node, p)
            r.next_index = node.log.last_index + 1
            node.replicators[p] = r
            r.task = asyncio.get_running_loop().create_task(r.run())
    node.update_commit()


def handle(node: "Node", msg: dict[str, Any]) -> Any:
    """Admin op "reconfigure" {"remove": name} or {"add": name}: at the leader, append the
    new configuration and answer once it is committed (a fail: surely not made)."""
    if node.role != "leader":
        return node.not_leader(msg)
    name = msg.get("remove") or msg.get("add")
    if name != node.name and name not in node.links:
        return node.fail(f"unknown node {name!r}")
    if node.config_index > node.commit_index:
        return node.fail("the previous configuration change is not committed yet")
    if node.majority and node.commit_index < node.term_start_index:
        return node.fail("leader not ready (its first entry is not committed yet)")
    voters = set(node.voters)
    if msg.get("remove"):
        if name == node.name:
            return node.fail("the leader does not remove itself")
        if name not in voters:
            return node.ok(sorted(voters))
        voters.discard(name)
    elif name in voters:
        return node.ok(sorted(voters))
    else:
        voters.add(name)
    index = node.append_local({"t": node.term, "cfg": sorted(voters)})
    return node._ack_when_committed(index, node.term)
