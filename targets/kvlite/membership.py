"""kvlite's membership capability (chaos.target.Membership), on the controller.

Every call goes to the node leading in the highest generation that answers (its own status
says "leader"), out of band at the nodes' real addresses. A change is the admin op
"reconfigure" (config.py on the nodes), answered once the new configuration is committed.

Both changes are idempotent on the nodes (removing a non-voter, or adding a voter, answers ok
at once), so everything that says "not made", "not made yet" or "outcome unknown" is asked
again, of whichever node leads then, until the timeout: "not leader", "previous change not
committed yet" (a new leader whose log holds the change uncommitted says this until it commits
it, so a retry never answers ok over an uncommitted change), and an "error" reply (the leader
lost its leadership while the change replicated: it may or may not commit). Only a refusal
that stays true ("unknown node", "the leader does not remove itself") is raised at once.
"""
from __future__ import annotations

import time
from typing import Any

from chaos.target import Cluster

from .client import call

#: fail replies that say the change did not happen yet and may be asked again
_RETRY = ("not leader", "not committed yet", "leader not ready", "leader lease expired")


def _leader(cluster: Cluster, timeout: float) -> tuple[str, dict[str, Any]]:
    """(name, status) of the leader of the highest generation answering; OSError if none."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for node in cluster.nodes:
        try:
            reply = call(cluster.endpoints[node], {"op": "status"}, timeout)
        except (OSError, ValueError):
            continue
        st = reply.get("value") or {}
        if reply.get("type") == "ok" and st.get("role") == "leader":
            gen = int(st.get("generation") or 0)
            if best is None or gen > best[0]:
                best = (gen, node, st)
    if best is None:
        raise ConnectionError("no kvlite node answers as leader")
    return best[1], best[2]


class KvliteMembership:
    """Remove and add kvlite voters through the leader (Raft single-server changes)."""

    def members(self, cluster: Cluster, timeout: float) -> list[str]:
        return list(_leader(cluster, timeout)[1].get("members") or [])

    def remove_member(self, cluster: Cluster, node: str, timeout: float) -> None:
        self._change(cluster, {"op": "reconfigure", "remove": node}, timeout)

    def add_member(self, cluster: Cluster, node: str, timeout: float) -> None:
        self._change(cluster, {"op": "reconfigure", "add": node}, timeout)

    def _change(self, cluster: Cluster, msg: dict[str, Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no leader"
        while time.monotonic() < deadline:
            try:
                leader, _ = _leader(cluster, 1.0)
                reply = call(cluster.endpoints[leader], msg, max(1.0, deadline - time.monotonic()))
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if reply.get("type") == "ok":
                    return
                last = f"{leader}: {reply.get('error')}"
                if reply.get("type") != "error" and not any(r in str(reply.get("error"))
                                                            for r in _RETRY):
                    raise RuntimeError(f"reconfigure {msg}: {last}")
            time.sleep(0.1)
        raise TimeoutError(f"reconfigure {msg} not committed within {timeout:g} s ({last})")
