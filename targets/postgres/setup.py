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


def _lsns(cluster: Cluster) -> tuple[int | None, dict[str, int | None]]:
    members = _members(cluster, 2.0)
    primary_lsn = None
    replayed: dict[str, int | None] = {}
    for node in cluster.nodes:
        m = members.get(node)
        xlog = (m or {}).get("xlog") or {}
        if m and m.get("role") in PRIMARY_ROLES:
            primary_lsn = xlog.get("location")
        else:
            replayed[node] = xlog.get("replayed_location")
    return primary_lsn, replayed


def wait_replicated(cluster: Cluster, timeout: float) -> bool:
    """Wait until every standby replayed the primary's WAL position; False on timeout (best
    effort: the final reads then show what diverged, which is the point of them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        primary_lsn, replayed = _lsns(cluster)
        if primary_lsn is not None and all(v is not None and v >= primary_lsn
                                           for v in replayed.values()):
            return True
        time.sleep(_POLL)
    return False
