"""membership: a follower removed from the cluster's configuration, later added back as a new
member (params node: "follower" | a name). Only for targets with a `membership` capability
(chaos.target.Membership); others are refused up front (exit 4).

start ("remove-member"): `remove_member` through the target (committed when it returns), then
the node is SIGKILLed (a removed member must not campaign with its old configuration; etcd
stops one itself) and its data moved aside like the member fault's wipe (it comes back as a
NEW member, never with its old log). Verified: `members` no longer lists it, and a leader
among the remaining nodes answers (the cluster runs without it) within VERIFY_TIMEOUT.

stop ("add-member"): `add_member`, then the node starts with `NodeConfig.rejoin` True.
Verified: `members` lists it again and its status `log_position` reaches the leader's (the
member fault's catch-up rule) within its timeout.

heal: a node still removed (the run ended or was interrupted inside the window) is added back
the same way; when that fails the heal says so and the verdict is unknown: a run never ends
silently valid with a smaller cluster than it started with.

A removed node is in `Nemesis.removed` for the window: the liveness watcher counts it as held
down by the nemesis, and chaos.history.faults.NODE_OUT makes the evidence rules read its
monitor silence as the fault's (one rule, for kill, pause and membership alike).
"""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Fault, Outcome, register
from chaos.faults.member import WIPE, caught_up

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis

#: seconds a membership call may take, and the verification polls at most
VERIFY_TIMEOUT = 20.0


class MembershipFault(Fault):
    kind = "membership"
    start_op, stop_op = "remove-member", "add-member"
    optional = True
    in_all = False
    heal_key = "membership"
    heal_order = 24

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        return {"node": "follower"}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        cap, cluster = _capability(nem)
        # a follower is only known once a leader is: wait for one, so the leader is never
        # the node picked at random
        node, why = nem.pick(params.get("node", "follower"), wait_s=VERIFY_TIMEOUT)
        if node in nem.removed:
            raise RuntimeError(f"{node} is already removed")
        if node == nem.ctx.leader():
            raise RuntimeError(f"{node} leads: only followers are removed")
        # from here on the node counts as removed whatever happens: a call that raised may
        # still have been committed, so the node is stopped and wiped either way and the
        # heal adds it back (adding a member that is one is a no-op for the target)
        nem.removed.add(node)
        rt = nem.ctx.runtime
        try:
            cap.remove_member(cluster, node, VERIFY_TIMEOUT)
        finally:
            rt.kill(node)
            res = rt.run(node, WIPE, 30)
        nem.current = f"{node} removed from the membership ({why})"
        problems = [] if res.ok else [f"cannot move {node}'s data aside: "
                                      f"{(res.err or res.out)[:200]}"]
        members, leader, problem = _poll(nem, lambda m, ldr: node not in m and ldr not in
                                         (None, node), f"{node} still listed, or no leader "
                                         "among the others")
        if problem:
            problems.append(f"after removing {node}: {problem}")
        if rt.is_running(node):
            problems.append(f"{node} still running after SIGKILL")
        return {"node": node, "chosen": why, "members": members, "leader": leader}, problems

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        return self._add_back(nem)

    def heal(self, nem: Nemesis) -> Outcome:
        if not nem.removed:
            return {}, []
        did, problems = self._add_back(nem)
        return {"membership": did}, [f"could not restore the full membership: {p}"
                                     for p in problems]

    def _add_back(self, nem: Nemesis) -> Outcome:
        cap, cluster = _capability(nem)
        did: dict[str, Any] = {}
        problems: list[str] = []
        for node in sorted(nem.removed):
            try:
                cap.add_member(cluster, node, VERIFY_TIMEOUT)
                nem.ctx.restart(node, rejoin=True)
            except Exception as exc:  # noqa: BLE001 - recorded; the node stays removed
                problems.append(f"adding {node} back failed: {type(exc).__name__}: {exc}")
                continue
            nem.removed.discard(node)
            members, leader, problem = _poll(
                nem, lambda m, ldr, node=node: node in m and ldr is not None,
                f"{node} not listed, or no leader")
            seen, late = caught_up(nem, node)
            did[node] = {"members": members, "leader": leader, "caught_up": seen}
            problems += [f"after adding {node}: {p}" for p in (problem, late) if p]
        return {"nodes": did}, problems


def _capability(nem: Nemesis) -> tuple[Any, Any]:
    if nem.ctx.membership is None or nem.ctx.cluster is None:
        raise RuntimeError("the target has no membership capability (Target.membership)")
    return nem.ctx.membership, nem.ctx.cluster()


def _poll(nem: Nemesis, ok: Any, what: str) -> tuple[list[str], str | None, str | None]:
    """(members, leader, None) once ok(members, leader) holds; else the last seen and why."""
    cap, cluster = _capability(nem)
    t0 = time.monotonic()
    seen: list[str] = []
    leader: str | None = None
    error = ""
    while time.monotonic() - t0 < VERIFY_TIMEOUT:
        try:
            seen = sorted(cap.members(cluster, 2.0))
            leader = nem.ctx.leader()
            if ok(seen, leader):
                return seen, leader, None
        except Exception as exc:  # noqa: BLE001 - no answer yet: poll on
            error = f" (last error: {type(exc).__name__}: {str(exc)[:120]})"
        time.sleep(0.1)
    return seen, leader, (f"{what} within {VERIFY_TIMEOUT:g} s: members {seen}, "
                          f"leader {leader}{error}")


register(MembershipFault())
