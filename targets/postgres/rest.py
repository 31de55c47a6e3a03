"""Patroni's REST API, read by the monitor and the cluster hooks (out of band, real addresses).

GET /patroni answers for the member itself: `role` is what PostgreSQL says it is
(pg_is_in_recovery: "master" (Patroni 3.0) or "primary" (later versions) for a read-write
primary, "replica" for a standby), `timeline` is the primary's current WAL timeline or the
one a standby replays, `state` is Patroni's view of its postmaster ("running", "starting",
"stopped", "crashed", ...). GET /cluster lists the members as this member's etcd sees them,
with the holder of the leader key as role "leader".

Chaos's status keys: role (leader / follower / unknown), term = the timeline (a promotion
starts a new one, so two primaries on one timeline are a split brain the dual-leaders checker
must flag), leader = the name of the member this node knows as the leader (itself for a
primary; else from its /cluster answer, None when that fails in time).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from chaos.target import Addr, Endpoints

#: Patroni's role names for a read-write primary (3.0 says master, 3.1+ says primary)
PRIMARY_ROLES = ("master", "primary")


def get_json(addr: Addr, path: str, timeout: float) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body) of GET http://addr/path. Patroni answers 503 with a
    JSON body for health endpoints, so an HTTP error status is an answer, not an exception;
    raises OSError when nothing answers in time."""
    url = f"http://{addr.host}:{addr.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=max(timeout, 0.05)) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, None


def to_status(node: str, member: dict[str, Any]) -> dict[str, Any]:
    """A /patroni answer -> chaos's status dict (role/term/leader plus Patroni's own keys)."""
    pg_role = member.get("role")
    state = member.get("state")
    if pg_role in PRIMARY_ROLES and state == "running":
        role = "leader"
    elif pg_role == "replica" and state == "running":
        role = "follower"
    else:
        role = "unknown"
    xlog = member.get("xlog") or {}
    out: dict[str, Any] = {
        "role": role,
        "term": member.get("timeline") if isinstance(member.get("timeline"), int) else None,
        "leader": node if role == "leader" else None,
        "state": state,
        "pg_role": pg_role,
        "lsn": xlog.get("location", xlog.get("replayed_location")),
    }
    if "received_location" in xlog:
        out["received_lsn"] = xlog["received_location"]
    for key in ("sync_standby", "cluster_unlocked"):
        if key in member:
            out[key] = member[key]
    return out


def cluster_leader(cluster: Any) -> str | None:
    """The leader key holder's name in a /cluster answer, or None."""
    for m in (cluster or {}).get("members", []):
        if m.get("role") in ("leader", "standby_leader"):
            return str(m.get("name"))
    return None


def cluster_status(addr: Addr, timeout: float) -> dict[str, Any]:
    """GET /cluster of the member at `addr` (its view of every member); raises OSError."""
    _, body = get_json(addr, "/cluster", timeout)
    return body if isinstance(body, dict) else {}


def node_status(node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
    """The status of `node` from its own REST API; raises OSError when it does not answer."""
    deadline = time.monotonic() + timeout
    api = endpoints.port(node, "api")
    _, member = get_json(api, "/patroni", timeout)
    if not isinstance(member, dict):
        raise ConnectionError(f"{node}: /patroni answered {member!r:.80}")
    status = to_status(node, member)
    if status["role"] != "leader":
        left = deadline - time.monotonic()
        if left > 0.05:
            try:
                status["leader"] = cluster_leader(cluster_status(api, left))
            except (OSError, ValueError):
                pass      # its DCS may be out of reach (a partition): leader unknown
    return status


def describe(node: str, endpoints: Endpoints, timeout: float) -> str:
    """One line saying what `node`'s REST API answered (for setup errors)."""
    try:
        _, member = get_json(endpoints.port(node, "api"), "/patroni", timeout)
    except (OSError, ValueError) as exc:
        return f"{node}: REST API did not answer ({type(exc).__name__}: {exc})"
    if not isinstance(member, dict):
        return f"{node}: /patroni answered {member!r:.80}"
    return (f"{node}: state={member.get('state')} role={member.get('role')} "
            f"timeline={member.get('timeline')}"
            + (" cluster_unlocked" if member.get("cluster_unlocked") else ""))
