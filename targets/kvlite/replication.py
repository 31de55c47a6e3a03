"""Replication from the leader: one loop per follower, and the commit rule of each mode.

The leader pushes; followers never connect back. Each Replicator keeps `next_index` and
`match_index` for its follower (Raft-style), sends batches of encoded entries (an empty batch
is the heartbeat), and walks `next_index` back on a log mismatch using the follower's hint.
A follower whose next entry was compacted away gets the leader's snapshot first, then the
log after it (the "new follower from a snapshot" path of the seeds). A restarted follower
catches up the same way: its reply says where its log ends.

Commit rules (`commit_candidate`), on top of the leader's own flushed index:
- async:     the leader's own index (ack after the local append)
- sync:      the smallest match index over all followers
- semi-sync: the match index of the one synchronous follower; when it fails (error or no
             answer within the election timeout) a healthy follower takes the role
- quorum:    the majority-th highest match index (leader included)

Asynchronous followers (all of them in async mode, the non-synchronous ones in semi-sync
mode) are shipped batches at most every `replication_lag_ms` (default 50 ms), like the group
commit delays of real databases: async replication has a lag, so an acknowledged write can be
lost when the leader dies. Set it to 0 to ship at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .peers import PeerError
from .protocol import dumps

if TYPE_CHECKING:
    from .node import Node

BATCH = 512


class Replicator:
    """Keeps one follower up to date while this node leads in one term."""

    def __init__(self, node: "Node", peer: str):
        self.node = node
        self.peer = peer
        self.term = node.term
        self.next_index = node.log.last_index + 1
        self.match = 0
        #: the follower said it is a learner (rejoined, not caught up): its acks do not count
        self.learner = False
        self.wake = asyncio.Event()
        self.healthy = False
        self.last_ok = 0.0
        self.task: asyncio.Task[None] | None = None
        self._failing = False
        self._refused = False

    def active(self) -> bool:
        n = self.node
        return n.role == "leader" and n.term == self.term and n.replicators.get(self.peer) is self

    def lagging(self) -> bool:
        """Asynchronous followers get batches at most every replication_lag_ms: async in
        async mode, and every follower but the synchronous one in semi-sync mode."""
        mode = self.node.opts.replication
        return mode == "async" or (mode == "semi-sync" and self.peer != self.node.sync_follower)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        node = self.node
        backoff = node.opts.hb
        while self.active():
            try:
                more = await self.step()
            except PeerError as exc:
                if not self._failing:
                    node.note(f"replication to {self.peer} failing: {exc}", logging.WARNING)
                    backoff = node.opts.hb
                self._failing = True
                self.healthy = False
                on_follower_failed(node, self.peer)
                # a dead or cut-off peer is probed again with backoff, up to an election timeout
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, node.opts.et)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not silently stop replication
                logging.getLogger("kvlite").exception("replicator %s crashed; restarting",
                                                      self.peer)
                await asyncio.sleep(node.opts.hb)
                continue
            if self._failing:
                node.note(f"replication to {self.peer} recovered")
                self._failing = False
            if node.opts.replication_lag_ms and self.lagging():
                await asyncio.sleep(node.opts.replication_lag_ms / 1000)
            if not more and self.active():
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), node.opts.hb)
                except asyncio.TimeoutError:
                    pass

    async def step(self) -> bool:
        """One append (or snapshot) round trip; True when more entries are waiting."""
        node, lg = self.node, self.node.log
        timeout = max(node.opts.et, 0.05)
        if self.next_index <= lg.snapshot_index:
            msg = {"op": "install-snapshot", "term": self.term, "leader": node.name,
                   "index": lg.snapshot_index, "last_term": lg.snapshot_term,
                   "state": lg.snapshot_state, "config": lg.snapshot_config}
            sent = time.monotonic()
            node.note(f"sending snapshot at {lg.snapshot_index} to {self.peer}")
            reply = await node.links[self.peer].call(msg, timeout=max(timeout, 5.0))
            return self.handle(reply, sent)
        prev = self.next_index - 1
        raws = [] if node.paused_replication else lg.slice_raw(self.next_index, BATCH)
        head = dumps({"op": "append", "term": self.term, "leader": node.name, "prev_index": prev,
                      "prev_term": lg.term_at(prev), "commit": node.commit_index,
                      "last": lg.last_index})
        raw = ("%s,\"entries\":[%s]}\n" % (head[:-1], ",".join(raws))).encode()
        sent = time.monotonic()
        reply = await node.links[self.peer].call({}, timeout=timeout, raw=raw)
        return self.handle(reply, sent)

    @property
    def voting_match(self) -> int:
        """The match index a commit may count on: 0 while the follower is a learner."""
        return 0 if self.learner else self.match

    def handle(self, reply: dict, sent: float) -> bool:
        node = self.node
        if not self.active():
            return False
        rterm = reply.get("term", 0)
        if rterm > node.term:
            if not node.majority:
                # naive: no fencing. The peer follows a newer leader, but we only step down
                # when that leader's own heartbeat reaches us (follower.heard_from_leader)
                if not self._refused:
                    node.note(f"{self.peer} follows a newer leader; still leading (no fencing)")
                self._refused = True
                return False
            node.note(f"{self.peer} has term {rterm} > ours: stepping down")
            node.become_follower(rterm, None)
            return False
        self._refused = False
        if reply.get("rival_leader"):
            node.note(f"{self.peer} leads the same generation: stepping down")
            node.become_follower(node.term, reply["rival_leader"])
            return False
        if not reply.get("ok"):
            nxt = reply.get("next", self.next_index - 1)
            ct = reply.get("conflict_term")
            if ct is not None:
                # skip the follower's whole run of that term at once: resume after our own
                # last entry of it (Raft's fast log back-tracking)
                lg = node.log
                i = min(self.next_index - 1, lg.last_index)
                while i > lg.snapshot_index and lg.term_at(i) > ct:
                    i -= 1
                if i > lg.snapshot_index and lg.term_at(i) == ct:
                    nxt = max(int(nxt), i + 1)
            self.next_index = max(1, min(int(nxt), node.log.last_index + 1))
            return True
        now = time.monotonic()
        self.match = reply["match"]
        self.next_index = self.match + 1
        self.healthy, self.last_ok = True, now
        self.learner = bool(reply.get("learner"))
        if not self.learner:  # a learner's ack backs neither a commit nor the lease
            node.ack_sent[self.peer] = sent
            node.ack_recv[self.peer] = now
        on_follower_ok(node, self.peer)
        node.update_commit()
        return self.next_index <= node.log.last_index and not node.paused_replication


def on_follower_ok(node: "Node", peer: str) -> None:
    """Semi-sync: a healthy follower becomes synchronous when there is none."""
    if node.opts.replication != "semi-sync":
        return
    cur = node.replicators.get(node.sync_follower or "")
    if cur is None or not cur.healthy:
        if node.sync_follower != peer:
            node.note(f"semi-sync: {peer} is now the synchronous follower "
                      f"(was {node.sync_follower})")
        node.sync_follower = peer


def on_follower_failed(node: "Node", peer: str) -> None:
    """Semi-sync: when the synchronous follower fails, promote the best healthy one."""
    if node.opts.replication != "semi-sync" or node.sync_follower != peer:
        return
    healthy = [r for r in node.replicators.values() if r.healthy and r.peer != peer]
    if healthy:
        best = max(healthy, key=lambda r: (r.match, r.last_ok))
        node.note(f"semi-sync: synchronous follower {peer} failed; {best.peer} takes over")
        node.sync_follower = best.peer


def commit_candidate(node: "Node") -> int:
    """The highest index the replication mode allows the leader to commit now."""
    local = node.log.durable_index
    mode = node.opts.replication
    reps = node.replicators
    if mode == "async" or not reps and mode != "semi-sync":
        return local
    if mode == "sync":
        return min([local] + [r.voting_match for r in reps.values()])
    if mode == "semi-sync":
        if not node.peer_names:
            return local
        r = reps.get(node.sync_follower or "")
        return min(local, r.voting_match) if r is not None else node.commit_index
    matches = sorted([local] + [r.voting_match for r in reps.values()], reverse=True)
    return matches[node.cluster_size // 2]
