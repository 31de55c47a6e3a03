"""member: a follower loses its data and rejoins as a new member (params node: "follower" |
a name); the stop verifies it caught up.

The start SIGKILLs the node, moves everything in its data dir aside into
`.chaos-wiped/<k>/` (kept for the post-mortem; the runtime's own files, `*.out` and
`*.pid`, and chaos' control files `.chaos-*` stay), and starts it again with
`NodeConfig.rejoin` True: the target must bring it back as a NEW member (a snapshot plus the
log after it, then catch-up; in a consensus system it must not vote or count toward a
quorum before it has caught up, or acknowledged writes could be lost by its amnesia).
Verified: the node runs again after the start; at the stop its status `log_position`
reaches the leader's (as the leader reported it when the check began; when the rejoined node
itself leads by then, the highest position another node reports) within CATCH_UP_TIMEOUT,
else the fault is unverified and the verdict unknown.

The follower is picked once a leader is known (waiting up to CATCH_UP_TIMEOUT: wiping the
node that leads is another fault). No node is wiped while a membership fault holds one out
of the configuration: a wiped voter cannot vote until it has caught up, so wiping one of the
remaining voters could leave no quorum at all (refused, so unverified: the verdict unknown).

Optional (`Target.faults` must list "member"): only a target knows whether a node with an
empty data dir can rejoin, and it must report `log_position` in its status.
"""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from chaos.faults.base import Fault, Outcome, register
from chaos.target import term_key

if TYPE_CHECKING:  # pragma: no cover
    from chaos.nemesis import Nemesis

#: seconds the stop waits for the rejoined node's log position to reach the leader's
CATCH_UP_TIMEOUT = 20.0
#: moves the data dir's content aside (the runtime's outputs and chaos' files stay)
WIPE = ("k=$(date +%s%N); mkdir -p .chaos-wiped/$k && n=0; for f in * .[!.]*; do "
         "case \"$f\" in '*'|'.[!.]*'|*.out|*.pid|.chaos-*) continue;; esac; "
         "mv -- \"$f\" .chaos-wiped/$k/ && n=$((n+1)); done; echo $n")


class Member(Fault):
    kind = "member"
    start_op, stop_op = "wipe", "rejoin"
    optional = True
    in_all = False
    heal_key = "member"
    heal_order = 25

    def schedule_params(self, rng: random.Random, opts: dict[str, Any]) -> dict[str, Any]:
        return {"node": "follower"}

    def start(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        if nem.removed:
            raise RuntimeError(f"refused: {', '.join(sorted(nem.removed))} is out of the "
                               "membership, and a wiped voter of the rest could leave no quorum")
        node, why = nem.pick(params.get("node", "follower"), wait_s=CATCH_UP_TIMEOUT)
        rt = nem.ctx.runtime
        rt.kill(node)
        nem.killed.add(node)  # until it runs again: the heal restarts it, liveness knows
        res = rt.run(node, WIPE, 30)
        if not res.ok:
            raise RuntimeError(f"cannot wipe {node}'s data: {(res.err or res.out)[:200]}")
        nem.ctx.restart(node, rejoin=True)
        nem.killed.discard(node)
        nem.state.setdefault(self.kind, []).append(node)
        nem.current = f"{node} wiped, rejoining as a new member ({why})"
        problems = [] if rt.is_running(node) else [f"{node} not running after the rejoin start"]
        return {"node": node, "chosen": why, "moved_aside": int(res.out.split()[-1] or 0)}, \
            problems

    def stop(self, nem: Nemesis, params: dict[str, Any]) -> Outcome:
        nodes = nem.state.pop(self.kind, [])
        did: dict[str, Any] = {}
        problems: list[str] = []
        for node in nodes:
            seen, problem = caught_up(nem, node)
            did[node] = seen
            if problem:
                problems.append(problem)
        return {"caught_up": did}, problems

    def heal(self, nem: Nemesis) -> Outcome:
        """Nothing to undo (the node runs again since the start); a rejoin whose stop never
        came (the run was interrupted or the cluster went down) stays unverified, without
        waiting for it on the way out."""
        nodes = nem.state.pop(self.kind, [])
        return ({"member": {"not_verified": nodes}} if nodes else {}), [
            f"{node} rejoined but the run ended before its catch-up was verified"
            for node in nodes]


def caught_up(nem: Nemesis, node: str,
              timeout: float = CATCH_UP_TIMEOUT) -> tuple[dict[str, Any], str | None]:
    """Poll until `node`'s log_position reaches the leader's (read once, at the start): the
    catch-up rule of a rejoined node (the member fault's rejoin, the membership fault's add).

    When `node` itself leads by then (it caught up and won an election), the goal is the
    highest log_position the other nodes answer with: a leader is caught up when its log
    reaches every other node's, whatever the target's election rule (a naive one may elect a
    node with an empty log; then the goal shows it)."""
    status = nem.ctx.status
    if status is None:
        return {}, f"no status source: {node}'s catch-up cannot be verified"
    t0 = time.monotonic()
    goal: Any = None
    leader: str | None = None
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            if goal is None:
                leader = nem.ctx.leader()
                if leader is not None and leader != node:
                    goal = status(leader).get("log_position")
                    if goal is None:
                        return {}, (f"the leader {leader}'s status has no log_position: "
                                    f"{node}'s catch-up cannot be verified")
                elif leader == node:
                    goal = _highest_other(nem, node)
            else:
                last = status(node).get("log_position")
                if last is not None and term_key(last) >= term_key(goal):
                    return {"node": node, "leader": leader, "log_position": last,
                            "leader_position": goal,
                            "seconds": round(time.monotonic() - t0, 2)}, None
        except Exception:  # noqa: BLE001 - not answering yet: poll on
            pass
        time.sleep(0.1)
    return ({"node": node, "leader": leader, "log_position": last, "leader_position": goal},
            f"{node} did not catch up within {timeout:g} s (log_position {last}, the "
            f"leader {leader}'s {goal})")


def _highest_other(nem: Nemesis, node: str) -> Any:
    """The highest log_position the nodes other than `node` answer with (None: none did)."""
    assert nem.ctx.status is not None
    best: Any = None
    for other in nem.ctx.nodes:
        if other == node:
            continue
        try:
            pos = nem.ctx.status(other).get("log_position")
        except Exception:  # noqa: BLE001 - a node down (killed, removed) has no say
            continue
        if pos is not None and (best is None or term_key(pos) > term_key(best)):
            best = pos
    return best


register(Member())
