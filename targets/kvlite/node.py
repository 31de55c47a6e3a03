"""One kvlite node: its role, its state, and the handlers of every request.

Two views of the data are kept: `state` holds the committed entries (what reads return) and
`head` holds every entry in the log (what a cas at the leader is decided against, so that a
cas after an uncommitted write sees that write). Both are rebuilt from the snapshot and the
log when entries are discarded.

Roles: "leader", "follower", "candidate" (majority failover only). `term` is a Raft term
with failover=majority; with none/naive it is a hidden generation (bumped on each
self-promotion, used only so that a deposed leader recognises a newer one and discards its
unreplicated entries) and status reports term null: naive failover has no terms.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from . import config, election, follower, replication
from .log import DurableLog
from .peers import PeerError, PeerLink
from .protocol import ProtocolError, apply_entry, copy_state, read_set, read_value

log = logging.getLogger("kvlite")

WRITE_OPS = ("write", "cas", "add")
READ_OPS = ("read", "read-set")


@dataclass
class Options:
    """The node's switches (DESIGN §6); server.py documents each flag."""

    replication: str = "async"        # async | sync | semi-sync | quorum
    failover: str = "naive"           # none | naive | majority
    read_from: str = "leader"         # leader | any
    routing: str = "client"           # client | forward
    heartbeat_ms: int = 100
    election_timeout_ms: int = 1000
    fsync: str = "never"              # always | never
    initial_leader: str | None = None
    snapshot_every: int = 10000       # compact the log after this many applied entries
    commit_wait_ms: int = 5000        # a write waiting longer for replication gets an error
    replication_lag_ms: int = 50      # async followers: pause between shipped batches
    rejoin: bool = False              # started with a wiped data dir: a learner until caught up

    @property
    def hb(self) -> float:
        return self.heartbeat_ms / 1000

    @property
    def et(self) -> float:
        return self.election_timeout_ms / 1000


class Node:
    """The node core. All methods run on the node's one event loop."""

    def __init__(self, name: str, peers: dict[str, tuple[str, int]], data_dir: str, opts: Options):
        self.name = name
        self.opts = opts
        #: every node it was started with; `peer_names` / `cluster_size` / `voters`: the
        #: current configuration's (config.py: membership changes)
        self.all_peers = sorted(peers)
        self.peer_names = list(self.all_peers)
        self.links = {p: PeerLink(p, *peers[p]) for p in self.all_peers}   # replication
        self.ctl = {p: PeerLink(p, *peers[p]) for p in self.all_peers}     # votes/status/forward
        self.voters = sorted([name, *peers])
        self.config_index = 0
        self.log = DurableLog(data_dir, fsync=opts.fsync == "always")
        self.majority = opts.failover == "majority"
        self.cluster_size = len(peers) + 1
        self.role = "follower"
        self.term = 0
        self.voted_for: str | None = None
        #: a rejoined node (wiped data, --rejoin) until it holds everything committed: it
        #: neither votes nor campaigns nor promotes itself, and leaders do not count its acks
        #: (its amnesia must not decide an election or a commit)
        self.learner = False
        self.leader: str | None = None
        self.state: dict[Any, Any] = {}
        self.head: dict[Any, Any] = {}
        self.commit_index = 0
        self.applied_index = 0
        self.last_heard = time.monotonic()
        self.started_at = time.monotonic()
        self.waiters: dict[int, list[asyncio.Future[None]]] = {}
        self.replicators: dict[str, replication.Replicator] = {}
        self.sync_follower: str | None = None
        self.paused_replication = False
        self.discarded = 0
        self.term_start_index = 0
        self.append_lock = asyncio.Lock()
        self.events: list[str] = []
        self.handlers: dict[str, Any] = {
            "read": self.h_read, "read-set": self.h_read, "status": self.h_status,
            "write": self.h_write, "cas": self.h_write, "add": self.h_write,
            "append": self.h_append, "install-snapshot": self.h_install_snapshot,
            "vote": self.h_vote, "promote": self.h_promote, "step-down": self.h_step_down,
            "pause-replication": self.h_pause, "snapshot": self.h_snapshot,
            "reconfigure": lambda msg: config.handle(self, msg),
        }

    # --- start-up -----------------------------------------------------------------------

    def start(self) -> None:
        """Recover from disk and take the initial role."""
        self.log.open()
        if self.log.recovery:
            self.note(f"log tail damaged at start-up, truncated: {self.log.recovery}",
                      logging.ERROR)
        meta = self.log.load_meta()
        if meta.get("damaged"):
            self.note("meta.json damaged; starting from term 0", logging.ERROR)
        self.term = int(meta.get("term", 0))
        self.voted_for = meta.get("voted_for")
        was_leader = bool(meta.get("was_leader"))
        self.learner = bool(meta.get("learner"))
        self.state = self.log.snapshot_state_dict()
        self.commit_index = self.applied_index = self.log.snapshot_index
        self.head = copy_state(self.state)
        for e in self.log.entries:
            apply_entry(self.head, e)
        config.refresh(self)
        if not self.majority:
            # without consensus every logged entry counts (async followers apply on receipt)
            self.advance_commit(self.log.last_index)
        fresh = self.log.last_index == 0 and self.term == 0
        if self.opts.rejoin and fresh:
            self.learner = True
            self.save_meta()
            self.note("rejoining with an empty data dir: a learner until caught up",
                      logging.WARNING)
        init = self.opts.initial_leader
        if self.learner:
            self.note(f"learner: waiting for a leader (log to {self.log.last_index})")
        elif self.opts.failover == "none" and init == self.name:
            self.become_leader(max(self.term, 1))
        elif self.opts.failover == "naive" and init == self.name and fresh:
            self.become_leader(1)
        elif self.opts.failover == "naive" and was_leader:
            # no terms, no fencing: it led when it went down, so it leads again until it
            # hears of a newer leader (then it steps down and discards what it alone has)
            self.note("was leader before the restart: resuming as leader (naive failover)",
                      logging.WARNING)
            self.become_leader(self.term)
        else:
            self.leader = init if (fresh and not self.majority and init != self.name) else None
            self.note(f"started as follower (log to {self.log.last_index}, term {self.term})")

    def note(self, msg: str, level: int = logging.INFO) -> None:
        """Log to node.log and keep the last events for status (so tests can see them)."""
        log.log(level, msg)
        self.events.append(f"{time.time():.3f} {msg}")
        del self.events[:-20]

    # --- role changes -------------------------------------------------------------------

    def set_term(self, term: int, voted_for: str | None) -> None:
        """Adopt a term (persisted before it is acted upon)."""
        if term != self.term or voted_for != self.voted_for:
            self.term, self.voted_for = term, voted_for
            self.save_meta()

    def save_meta(self) -> None:
        """Term, vote, and (naive) whether this node leads: it resumes leading after a crash."""
        self.log.save_meta({"term": self.term, "voted_for": self.voted_for,
                            "was_leader": self.role == "leader" and not self.majority,
                            "learner": self.learner})

    def become_leader(self, term: int) -> None:
        self.set_term(term, self.voted_for if term == self.term else self.name)
        self.role, self.leader = "leader", self.name
        if not self.majority:
            self.save_meta()
        self.sync_follower = None
        self.ack_sent: dict[str, float] = {}
        self.ack_recv: dict[str, float] = {}
        self.leader_since = time.monotonic()
        self.note(f"became leader (term {self.public_term})")
        if not self.majority:
            # without consensus the new leader's log is the truth: all of it counts
            self.advance_commit(self.log.last_index)
        if self.majority:
            # a no-op in the new term: once it commits, everything before it is committed too
            self.append_local({"t": self.term, "n": 1})
            self.term_start_index = self.log.last_index
            self.log.durable().add_done_callback(lambda _f: self.update_commit())
        for p in self.peer_names:
            r = replication.Replicator(self, p)
            self.replicators[p] = r
            r.task = asyncio.get_running_loop().create_task(r.run())
        self.update_commit()

    def become_follower(self, term: int, leader: str | None) -> None:
        """Step down / follow; waiting writes get an unknown outcome (they may still commit)."""
        was = self.role
        if term > self.term:
            self.set_term(term, None)
        self.role, self.leader = "follower", leader
        if was == "leader" and not self.majority:
            self.save_meta()
        if was != "follower":
            self.note(f"became follower (term {self.public_term}, leader {leader}, was {was})")
        for r in self.replicators.values():
            r.stop()
        self.replicators = {}
        self.sync_follower = None
        self.fail_waiters(0, "leadership lost while waiting for replication")

    @property
    def public_term(self) -> int | None:
        """Naive and none failover have no terms: report null."""
        return self.term if self.majority else None

    # --- leases (majority failover) -----------------------------------------------------

    def _kth_recent(self, times: dict[str, float]) -> float:
        """The time by which a majority (self included) had answered."""
        need = self.cluster_size // 2        # followers needed besides ourselves
        if need == 0:
            return float("inf")
        vals = sorted((times.get(p, 0.0) for p in self.peer_names), reverse=True)
        return vals[need - 1]

    def lease_ok(self) -> bool:
        """True while no other leader can have been elected (monotonic, checked per use).

        The lease starts when a majority-acked append was *sent* and lasts 3/4 of the
        election timeout, while followers refuse votes for a full election timeout after
        *receiving* a leader's append: a paused (SIGSTOP) leader wakes with an expired lease.
        """
        if self.role != "leader":
            return False
        return time.monotonic() < self._kth_recent(self.ack_sent) + 0.75 * self.opts.et

    def majority_contact(self) -> float:
        return max(self._kth_recent(self.ack_recv), self.leader_since)

    # --- local log ----------------------------------------------------------------------

    def append_local(self, entry: dict[str, Any]) -> int:
        index = self.log.last_index + 1
        entry["i"] = index
        self.log.append(entry)
        apply_entry(self.head, entry)
        if "cfg" in entry:
            config.refresh(self)
        for r in self.replicators.values():
            r.wake.set()
        return index

    def advance_commit(self, index: int) -> None:
        """Apply entries up to `index` to the committed state and release waiting writes."""
        index = min(index, self.log.last_index)
        if index <= self.commit_index:
            return
        st, entries, base = self.state, self.log.entries, self.log.snapshot_index + 1
        for i in range(self.applied_index + 1 - base, index + 1 - base):
            apply_entry(st, entries[i])
        old, self.commit_index = self.commit_index, index
        self.applied_index = index
        if self.waiters:
            for i in range(old + 1, index + 1):
                for fut in self.waiters.pop(i, ()):
                    if not fut.done():
                        fut.set_result(None)
        if self.applied_index - self.log.snapshot_index >= self.opts.snapshot_every:
            self.take_snapshot()

    def update_commit(self) -> None:
        if self.role == "leader":
            c = replication.commit_candidate(self)
            if c > self.commit_index and (not self.majority or self.log.term_at(c) == self.term):
                self.advance_commit(c)

    def fail_waiters(self, after: int, reason: str) -> None:
        for i in [i for i in self.waiters if i > after]:
            for fut in self.waiters.pop(i):
                if not fut.done():
                    fut.set_exception(RuntimeError(reason))

    def truncate(self, index: int, why: str) -> None:
        """Discard entries after `index` and rebuild both views (never silent)."""
        if index < self.log.snapshot_index:
            return self.reset_storage(f"{why} (below our snapshot at {self.log.snapshot_index})")
        dropped = self.log.truncate_after(index)
        if not dropped:
            return
        self.discarded += len(dropped)
        self.note(f"discarded {len(dropped)} entries after index {index}: {why}", logging.WARNING)
        self.fail_waiters(index, "entry discarded")
        if self.applied_index > index:
            self.state = self.log.snapshot_state_dict()
            base = self.log.snapshot_index
            for e in self.log.entries_from(base + 1)[:index - base]:
                apply_entry(self.state, e)
            self.commit_index = self.applied_index = index
        self.head = copy_state(self.state)
        for e in self.log.entries_from(self.applied_index + 1):
            apply_entry(self.head, e)
        config.refresh(self)  # a discarded configuration entry is forgotten with it

    def reset_storage(self, why: str) -> None:
        """Drop snapshot and log (our history diverged below our snapshot)."""
        self.discarded += self.log.last_index
        self.note(f"reset storage ({self.log.last_index} entries dropped): {why}", logging.WARNING)
        self.log.install_snapshot(0, 0, [], None)
        self.state, self.head = {}, {}
        self.commit_index = self.applied_index = 0
        config.refresh(self)

    def take_snapshot(self) -> int:
        idx = self.applied_index
        if idx > self.log.snapshot_index:
            self.log.compact(idx, self.log.term_at(idx) or 0, self.state, config.at(self, idx))
            self.note(f"snapshot at index {idx}; log compacted")
        return idx

    # --- replies ------------------------------------------------------------------------

    def ok(self, value: Any = None) -> dict[str, Any]:
        return {"type": "ok", "value": value, "node": self.name, "term": self.public_term}

    def fail(self, error: str, **extra: Any) -> dict[str, Any]:
        return {"type": "fail", "error": error, "node": self.name, **extra}

    def error(self, error: str) -> dict[str, Any]:
        return {"type": "error", "error": error, "node": self.name}

    def not_leader(self, msg: dict[str, Any]) -> Any:
        """Tell the client who leads (client routing) or forward the request (node routing)."""
        target = self.leader
        if self.opts.routing == "forward" and not msg.get("fwd") and target and target != self.name:
            return self.forward(target, msg)
        return self.fail("not leader", leader=target)

    async def forward(self, target: str, msg: dict[str, Any]) -> dict[str, Any]:
        fwd = {k: v for k, v in msg.items() if k != "id"}
        fwd["fwd"] = 1
        try:
            return await self.ctl[target].call(fwd, timeout=self.opts.et)
        except PeerError as exc:
            if msg["op"] in READ_OPS:
                return self.fail(f"forward to {target} failed: {exc}")
            return self.error(f"forward to {target}: outcome unknown: {exc}")

    # --- client handlers ----------------------------------------------------------------

    def h_status(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self.ok(self.status())

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "term": self.public_term,
            "generation": self.term, "leader": self.leader,
            "last_index": self.log.last_index, "last_term": self.log.last_term,
            "log_position": self.log.last_index, "learner": self.learner,
            "members": self.voters,
            "time": time.time(),
            "commit_index": self.commit_index, "applied_index": self.applied_index,
            "snapshot_index": self.log.snapshot_index,
            "replication": self.opts.replication, "failover": self.opts.failover,
            "read_from": self.opts.read_from, "routing": self.opts.routing,
            "sync_follower": self.sync_follower,
            "lease": self.lease_ok() if self.majority else None,
            "paused_replication": self.paused_replication,
            "discarded": self.discarded, "log_recovery": self.log.recovery,
            "keys": len(self.state), "events": self.events[-5:],
        }

    def h_read(self, msg: dict[str, Any]) -> Any:
        fn = read_set if msg["op"] == "read-set" else read_value
        if msg.get("local"):        # "what does THIS node hold" (final reads after healing)
            return self.ok(fn(self.state, msg["key"]))
        if self.role != "leader" and (self.opts.read_from == "leader" or msg.get("fwd")):
            return self.not_leader(msg)
        if self.role == "leader" and self.majority:
            if self.commit_index < self.term_start_index:
                return self.fail("leader not ready (its first entry is not committed yet)")
            if not self.lease_ok():
                return self.fail("leader lease expired", leader=None)
        return self.ok(fn(self.state, msg["key"]))

    def h_write(self, msg: dict[str, Any]) -> Any:
        if self.role != "leader":
            return self.not_leader(msg)
        op, key = msg["op"], msg["key"]
        if op == "cas":
            expected, new = msg["value"]
            if read_value(self.head, key) != expected:
                return self.fail("cas mismatch")
            entry = {"t": self.term, "k": key, "v": new}
        elif op == "write":
            entry = {"t": self.term, "k": key, "v": msg["value"]}
        else:
            entry = {"t": self.term, "k": key, "a": msg["value"]}
        index = self.append_local(entry)
        return self._ack_when_committed(index, self.term)

    def _ack_when_committed(self, index: int, term: int) -> asyncio.Future[dict[str, Any]]:
        """A future of the write's reply: ok once committed per the replication mode.

        Built from callbacks rather than a task per write: this is the hot path.
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[dict[str, Any]] = loop.create_future()

        def finish(error: str | None) -> None:
            if reply.done():
                return
            if error is None and (self.role != "leader" or self.term != term):
                error = "leadership lost before the ack; outcome unknown"
            if error is None and self.majority and not self.lease_ok():
                error = "leader lease expired before the ack; outcome unknown"
            reply.set_result(self.error(error) if error else self.ok())

        def flushed() -> None:
            self.update_commit()
            if self.commit_index >= index:
                return finish(None)
            waiter = loop.create_future()
            self.waiters.setdefault(index, []).append(waiter)
            wait_ms = self.opts.commit_wait_ms
            timer = loop.call_later(wait_ms / 1000, finish,
                                    f"not replicated within {wait_ms} ms "
                                    f"({self.opts.replication}); outcome unknown")

            def released(f: asyncio.Future[None]) -> None:
                timer.cancel()
                exc = None if f.cancelled() else f.exception()
                finish(f"{exc}; outcome unknown" if exc else None)
            waiter.add_done_callback(released)

        self.log.after_flush(flushed)
        return reply

    # --- peer handlers ------------------------------------------------------------------

    def h_append(self, msg: dict[str, Any]) -> Any:
        return follower.handle_append(self, msg)

    def h_install_snapshot(self, msg: dict[str, Any]) -> Any:
        return follower.handle_install_snapshot(self, msg)

    def h_vote(self, msg: dict[str, Any]) -> dict[str, Any]:
        return election.handle_vote(self, msg)

    # --- admin handlers -----------------------------------------------------------------

    def h_promote(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.majority:
            self.last_heard = 0.0          # the election loop starts a campaign at once
            return self.ok("election requested")
        if self.role != "leader":
            self.become_leader(self.term + 1)
        return self.ok(self.status())

    def h_step_down(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.role == "leader":
            self.become_follower(self.term, None)
            self.last_heard = time.monotonic()
        return self.ok(self.status())

    def h_pause(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.paused_replication = bool(msg.get("value", True))
        self.note(f"replication {'paused' if self.paused_replication else 'resumed'} by admin")
        return self.ok(self.paused_replication)

    def h_snapshot(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self.ok(self.take_snapshot())

    # --- dispatch -----------------------------------------------------------------------

    def dispatch(self, msg: dict[str, Any], op: str) -> Any:
        """The reply dict, or an awaitable of it."""
        return self.handlers[op](msg)

    def stop(self) -> None:
        for r in self.replicators.values():
            r.stop()
        for link in (*self.links.values(), *self.ctl.values()):
            link.close()
        self.log.close()


__all__ = ["Node", "Options", "ProtocolError"]
