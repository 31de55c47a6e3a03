"""The follower side of replication: append entries, install snapshots, follow a leader.

A follower checks that its log matches the leader's at `prev_index` (same term there), then
appends the new entries, truncating any conflicting suffix first. Entries are durable
(flushed, fsynced with fsync=always) before the reply, so a leader's match index is a promise.

Discarding is never silent: every truncated entry is counted in status `discarded` and
logged in node.log. This is where a deposed naive leader loses its unreplicated writes.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import config
from .protocol import apply_entry, copy_state, dumps, state_from_json

if TYPE_CHECKING:
    from .node import Node


def heard_from_leader(node: "Node", term: int, leader: str) -> None:
    """A valid append from `leader` in `term` (>= ours): follow it."""
    if term > node.term or node.role != "follower":
        if node.role == "leader" and term == node.term and leader > node.name:
            return          # two leaders in one generation (naive split brain): lower name wins
        node.become_follower(term, leader)
    if node.leader != leader:
        node.note(f"following {leader} (term {node.public_term})")
    node.leader = leader
    node.last_heard = time.monotonic()


async def handle_append(node: "Node", msg: dict[str, Any]) -> dict[str, Any]:
    async with node.append_lock:
        return await _append(node, msg)


def _reply(node: "Node", ok: bool, **extra: Any) -> dict[str, Any]:
    if node.learner:
        extra["learner"] = True
    return {"type": "ok", "ok": ok, "term": node.term, **extra}


def _caught_up(node: "Node", match: int, leader_commit: int) -> None:
    """A learner holding everything its leader has committed becomes a voter again."""
    if node.learner and match >= leader_commit:
        node.learner = False
        node.save_meta()
        node.note(f"caught up to the leader's commit index {leader_commit}: a voter again")


async def _append(node: "Node", msg: dict[str, Any]) -> dict[str, Any]:
    term, leader = msg["term"], msg["leader"]
    if term < node.term:
        return _reply(node, False)
    heard_from_leader(node, term, leader)
    if node.role == "leader":            # same-generation rival with a higher name: refuse
        return _reply(node, False, rival_leader=node.name)
    prev, prev_term = msg["prev_index"], msg["prev_term"]
    entries: list[dict[str, Any]] = msg["entries"]
    lg = node.log
    if prev > lg.last_index:
        return _reply(node, False, next=lg.last_index + 1)
    if prev < lg.snapshot_index:         # the start of the batch is in our snapshot already
        skip = lg.snapshot_index - prev
        if skip > len(entries):
            return _reply(node, True, match=prev + len(entries))
        entries = entries[skip:]
        prev, prev_term = lg.snapshot_index, lg.snapshot_term
    elif lg.term_at(prev) != prev_term:
        if prev == lg.snapshot_index:
            node.reset_storage(f"snapshot at {prev} conflicts with leader {leader}")
            return _reply(node, False, next=1)
        bad = lg.term_at(prev)
        j = prev
        while j - 1 > lg.snapshot_index and lg.term_at(j - 1) == bad:
            j -= 1
        return _reply(node, False, next=j, conflict_term=bad)
    index = prev
    reconfigured = False
    for e in entries:
        index += 1
        if index <= lg.last_index:
            if lg.term_at(index) == e["t"]:
                continue
            node.truncate(index - 1, f"conflict with leader {leader} "
                                     f"(unreplicated writes of a deposed leader)")
        lg.append(e, dumps(e))
        apply_entry(node.head, e)
        reconfigured |= "cfg" in e
    if reconfigured:  # a configuration takes effect when appended
        config.refresh(node)
    if entries:
        await lg.durable()
    match = prev + len(entries)
    leader_last = msg.get("last")
    if leader_last == match and lg.last_index > match and lg.last_term != term:
        # entries past the end of the leader's whole log, from an older term/generation:
        # they can never commit (a deposed leader's unreplicated writes): discard them
        node.truncate(match, f"entries past the end of leader {leader}'s log")
    node.advance_commit(min(msg["commit"], match))
    _caught_up(node, match, msg["commit"])
    return _reply(node, True, match=match)


async def handle_install_snapshot(node: "Node", msg: dict[str, Any]) -> dict[str, Any]:
    """Bootstrap a new or far-behind follower from the leader's snapshot."""
    async with node.append_lock:
        term, leader = msg["term"], msg["leader"]
        if term < node.term:
            return _reply(node, False)
        heard_from_leader(node, term, leader)
        if node.role == "leader":
            return _reply(node, False, rival_leader=node.name)
        idx = msg["index"]
        if idx <= node.commit_index and node.log.term_at(idx) == msg["last_term"]:
            return _reply(node, True, match=idx)
        node.note(f"installing snapshot from {leader} at index {idx} "
                  f"(our log ended at {node.log.last_index})")
        node.log.install_snapshot(idx, msg["last_term"], msg["state"], msg.get("config"))
        node.state = state_from_json(msg["state"])
        node.head = copy_state(node.state)
        node.commit_index = node.applied_index = idx
        config.refresh(node)
        return _reply(node, True, match=idx)
