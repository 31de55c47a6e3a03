"""Cluster hooks: wait for a primary and streaming standbys, create the tables, let standbys
catch up before the final reads. All out of band (the cluster's real addresses).
"""
from __future__ import annotations

import time
from typing import Any

from chaos.errors import SetupError
from chaos.target import Addr, Cluster

from .client import DDL, connect
from .rest import PRIMARY_ROLES, describe, get_json

_POLL = 0.5


def _members(cluster: Cluster, timeout: float) -> dict[str, dict[str, Any]]:
    """node -> its /patroni answer, for the nodes that answered."""
    seen: dict[str, dict[str, Any]] = {}
    for node in cluster.nodes:
        try:
            _, body = get_json(cluster.endpoints.port(node, "api"), "/patroni", timeout)
        except (OSError, ValueError):
            continue
        if isinstance(body, dict):
            seen[node] = body
    return seen


def _streaming(primary: dict[str, Any]) -> set[str]:
    """Names of the standbys the primary's walsenders stream to."""
    return {str(r.get("application_name")) for r in primary.get("replication") or []
            if r.get("state") == "streaming"}


def wait_streaming(cluster: Cluster, timeout: float) -> str:
    """The primary's name once exactly one node is a running primary and every other node
    streams from it. SetupError naming what each node's REST API said when that does not
    happen within `timeout` (the run then tears everything down: exit 3)."""
    deadline = time.monotonic() + timeout
    while True:
        members = _members(cluster, 2.0)
        primaries = [n for n, m in members.items()
                     if m.get("role") in PRIMARY_ROLES and m.get("state") == "running"]
        if len(primaries) == 1:
            others = set(cluster.nodes) - {primaries[0]}
            if others <= _streaming(members[primaries[0]]):
                return primaries[0]
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL)
    said = "; ".join(describe(n, cluster.endpoints, 2.0) for n in cluster.nodes)
    what = ("no primary was elected" if not primaries else
            f"two primaries ({', '.join(primaries)})" if len(primaries) > 1 else
            f"primary {primaries[0]} but not every standby streaming")
    raise SetupError(f"postgres: {what} within {timeout:.0f} s; {said}")


def create_tables(primary: Addr, timeout: float = 30.0) -> None:
    """Create the workloads' tables on the primary (idempotent)."""
    try:
        with connect(primary, timeout=timeout) as conn:
            for stmt in DDL:
                conn.execute(stmt)
    except Exception as exc:  # noqa: BLE001 - any driver error is a setup failure
        raise SetupError(f"postgres: creating the tables on {primary} failed: "
                         f"{type(exc).__name__}: {exc}") from exc


def converged(members: dict[str, dict[str, Any]], nodes: list[str]) -> bool:
    """True when exactly one node is a running primary and every other node streams from it
    on its timeline and has replayed its WAL position. An old primary that has not yet been
    rewound may have a HIGHER position (its own diverged writes), so the position alone does
    not say it rejoined: it must also be one of the primary's streaming standbys."""
    primaries = [n for n, m in members.items()
                 if m.get("role") in PRIMARY_ROLES and m.get("state") == "running"]
    if len(primaries) != 1:
        return False
    primary = members[primaries[0]]
    position = (primary.get("xlog") or {}).get("location")
    streaming = _streaming(primary)
    for node in nodes:
        if node == primaries[0]:
            continue
        m = members.get(node) or {}
        replayed = (m.get("xlog") or {}).get("replayed_location")
        if (node not in streaming or m.get("timeline") != primary.get("timeline")
                or position is None or replayed is None or replayed < position):
            return False
    return True


def wait_replicated(cluster: Cluster, timeout: float) -> bool:
    """Wait until the cluster `converged`; False on timeout (best effort: the final reads
    then show what diverged, which is the point of them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if converged(_members(cluster, 2.0), list(cluster.nodes)):
            return True
        time.sleep(_POLL)
    return False
