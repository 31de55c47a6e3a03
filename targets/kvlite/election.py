"""Failure detection and failover: `none`, `naive` and `majority`.

Every node runs `watch(node)`: a ticker at the heartbeat interval.

- none:     nobody ever promotes itself (an operator uses the `promote` admin call).
- naive:    a follower that has not heard from its leader for the election timeout asks the
            peers it can reach for their status; if no reachable node is a leader, the most
            up-to-date reachable node (ties: lowest name) promotes itself. No votes, no
            terms, no fencing: an isolated old leader keeps acknowledging writes until it
            hears of the new one, then discards its unreplicated entries.
- majority: Raft-style. Randomized election timeout, terms persisted before use, votes only
            for a log at least as up to date as ours, and at most one vote per term. A
            follower that heard from a leader within the election timeout refuses votes,
            and so does a node for an election timeout after it starts (it may have heard
            from a leader just before it crashed): this is what makes the leader's read
            lease safe. A leader that has not heard from a majority for an election
            timeout steps down.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from .peers import PeerError

if TYPE_CHECKING:
    from .node import Node


async def watch(node: "Node") -> None:
    """The node's failure detector; runs for the life of the process."""
    opts = node.opts
    deadline = _next_deadline(node)
    while True:
        await asyncio.sleep(opts.hb / 2)
        try:
            now = time.monotonic()
            if node.role == "leader":
                if node.majority and now - node.majority_contact() > opts.et:
                    node.note("lost contact with a majority for an election timeout: stepping down",
                              logging.WARNING)
                    node.become_follower(node.term, None)
                    node.last_heard = now
                continue
            if opts.failover == "none" or node.learner or node.name not in node.voters:
                continue                 # a learner or a removed node never campaigns
            if node.last_heard == 0.0:       # admin promote: campaign now
                deadline = 0.0
            elif now - node.last_heard < deadline:
                continue
            if opts.failover == "naive":
                await naive_promote(node)
            else:
                await campaign(node)
            node.last_heard = time.monotonic()
            deadline = _next_deadline(node)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let the failure detector die
            logging.getLogger("kvlite").exception("election loop error")


def _next_deadline(node: "Node") -> float:
    spread = 1.0 if node.majority else 0.5
    return node.opts.et * (1 + spread * random.random())


async def _ask_all(node: "Node", msg: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    async def one(p: str) -> tuple[str, dict[str, Any] | None]:
        try:
            return p, await node.ctl[p].call(msg, timeout=timeout)
        except PeerError:
            return p, None
    results = await asyncio.gather(*(one(p) for p in node.peer_names))
    return {p: r for p, r in results if r is not None}


async def naive_promote(node: "Node") -> None:
    """Promote ourselves if we are the most up-to-date reachable node and nobody leads."""
    replies = await _ask_all(node, {"op": "status"}, timeout=max(node.opts.et / 2, 0.05))
    if node.role == "leader" or time.monotonic() - node.last_heard < node.opts.et:
        return                                   # things changed while we asked
    best = (node.log.last_term, node.log.last_index, _neg(node.name))
    me = best
    top_gen = node.term
    for p, r in replies.items():
        st = r.get("value") or {}
        top_gen = max(top_gen, st.get("generation") or 0)
        if st.get("role") == "leader" and (st.get("generation") or 0) >= node.term:
            if node.leader != p:
                node.note(f"naive failover: {p} is a reachable leader; waiting for it")
            node.leader = p
            return
        cand = (st.get("last_term", 0), st.get("last_index", 0), _neg(p))
        best = max(best, cand)
    if best == me:
        node.note(f"naive failover: leader {node.leader} silent for "
                  f"{node.opts.election_timeout_ms} ms; promoting myself "
                  f"(reachable: {sorted(replies) or 'none'})", logging.WARNING)
        node.become_leader(top_gen + 1)


def _neg(name: str) -> tuple[int, ...]:
    """Order names so that the lowest name compares highest."""
    return tuple(-ord(c) for c in name)


async def campaign(node: "Node") -> None:
    """One Raft election round."""
    term = node.term + 1
    node.role, node.leader = "candidate", None
    node.set_term(term, node.name)
    node.note(f"election timeout: campaigning in term {term}")
    msg = {"op": "vote", "term": term, "candidate": node.name,
           "last_index": node.log.last_index, "last_term": node.log.last_term}
    votes = 1
    if votes > node.cluster_size // 2:
        node.become_leader(term)
        return
    pending = [asyncio.ensure_future(node.ctl[p].call(msg, timeout=node.opts.et / 2))
               for p in node.peer_names]
    try:
        for fut in asyncio.as_completed(pending):
            try:
                r = await fut
            except PeerError:
                continue
            if node.term != term or node.role != "candidate":
                return
            if r.get("term", 0) > term:
                node.become_follower(r["term"], None)
                return
            if r.get("granted"):
                votes += 1
                if votes > node.cluster_size // 2:
                    node.become_leader(term)
                    return
    finally:
        for f in pending:
            f.cancel()
    if node.role == "candidate" and node.term == term:
        node.role = "follower"


def handle_vote(node: "Node", msg: dict[str, Any]) -> dict[str, Any]:
    """Answer a vote request (majority failover)."""
    term, cand = msg["term"], msg["candidate"]
    deny = {"type": "ok", "granted": False, "term": node.term}
    if not node.majority or term < node.term or node.learner or node.name not in node.voters:
        return deny                    # a learner's empty log must not elect anyone
    now = time.monotonic()
    if node.role == "leader" and node.lease_ok():
        return deny                    # our lease is live: nobody else may lead yet
    if node.role == "follower" and node.leader is not None and now - node.last_heard < node.opts.et:
        return deny                    # we heard from a live leader recently
    if now - node.started_at < node.opts.et:
        return deny                    # we may have heard from a live leader just before a crash
    if term > node.term:
        if node.role != "follower":
            node.become_follower(term, None)
        node.set_term(term, None)
        node.leader = None
    up_to_date = (msg["last_term"], msg["last_index"]) >= (node.log.last_term, node.log.last_index)
    if up_to_date and node.voted_for in (None, cand):
        node.set_term(term, cand)
        node.last_heard = now
        return {"type": "ok", "granted": True, "term": node.term}
    return {"type": "ok", "granted": False, "term": node.term}
