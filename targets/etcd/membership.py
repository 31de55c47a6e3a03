"""etcd's membership capability (chaos.target.Membership): its cluster member API.

remove: `member remove` (POST /v3/cluster/member/remove with the member's id), asked of a
member other than the one removed; etcd commits the change through Raft before it answers,
and the removed member stops itself. add: `member add` (POST /v3/cluster/member/add with the
node's real peer URL), then chaos starts the node with an empty data dir and
`--initial-cluster-state existing` (cluster.etcd_service, NodeConfig.rejoin). The member list
names a member by the peer URL it was added with, so a member added but not started yet
(etcd lists it without a name) is still found.
"""
from __future__ import annotations

import time
from typing import Any

from chaos.target import Cluster

from .cluster import url
from .gateway import call_once


def _peer_url(cluster: Cluster, node: str) -> str:
    return url(cluster.endpoints.port(node, "peer"))


def _ask(cluster: Cluster, path: str, body: dict[str, Any], timeout: float,
         avoid: str | None = None) -> dict[str, Any]:
    """The first member (not `avoid`) that answers `path`; the last error if none does."""
    last: Exception | None = None
    for node in cluster.nodes:
        if node == avoid:
            continue
        try:
            return call_once(cluster.endpoints[node], path, body, timeout)
        except Exception as exc:  # noqa: BLE001 - asked of the next member
            last = exc
    raise ConnectionError(f"no etcd member answered {path}: {last}")


class EtcdMembership:
    """Remove and add etcd members through the v3 cluster API (see the module doc)."""

    def _list(self, cluster: Cluster, timeout: float) -> dict[str, str]:
        """node name -> member id (decimal string), matched by peer URL."""
        by_url = {_peer_url(cluster, n): n for n in cluster.nodes}
        reply = _ask(cluster, "/v3/cluster/member/list", {}, timeout)
        out = {}
        for m in reply.get("members", []):
            for peer in m.get("peerURLs") or []:
                if peer in by_url:
                    out[by_url[peer]] = str(m.get("ID") or "0")
        return out

    def members(self, cluster: Cluster, timeout: float) -> list[str]:
        return sorted(self._list(cluster, timeout))

    def remove_member(self, cluster: Cluster, node: str, timeout: float) -> None:
        def remove() -> bool:
            ids = self._list(cluster, timeout)
            if node in ids:
                _ask(cluster, "/v3/cluster/member/remove", {"ID": ids[node]},
                     min(timeout, 5.0), avoid=node)
            return node not in self._list(cluster, timeout)
        _until(remove, timeout)

    def add_member(self, cluster: Cluster, node: str, timeout: float) -> None:
        def add() -> bool:
            if node not in self._list(cluster, timeout):
                _ask(cluster, "/v3/cluster/member/add",
                     {"peerURLs": [_peer_url(cluster, node)]}, min(timeout, 5.0), avoid=node)
            return node in self._list(cluster, timeout)
        _until(add, timeout)


def _until(step: Any, timeout: float) -> None:
    """step() until it returns True: a change is asked for only after the member list was
    read without it, so a change whose answer was lost is never made twice (etcd refuses a
    change while the previous one applies, and without a quorum). The last error, or
    TimeoutError, after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if step():
                return
            error: Exception = TimeoutError(f"the member list did not change within "
                                            f"{timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - asked again until the deadline
            error = exc
        if time.monotonic() >= deadline:
            raise error
        time.sleep(0.3)
