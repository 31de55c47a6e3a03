"""EtcdTarget: an etcd (Raft) cluster from Debian's etcd-server 3.4 (entry point `etcd`).

The control target of the toolkit (issue 12): with its default linearizable reads etcd must
come out valid under partitions, kills, pauses and latency; with
`-O read_consistency=serializable` a member answers reads from its own state, and a member
cut off from the leader serves stale values: the checkers must find them.

One service per node ("etcd", cluster.etcd_service): client API and JSON gateway on port
MAIN (2379 on remote runtimes), Raft on port "peer" (2380); data in <data_dir>/etcd, kept
across restarts. Members must know each other by their real peer URLs (cluster.py), so the
explicit proxy mesh cannot carry them: `supports_mesh = False`; on Docker the transparent
mesh applies every network fault, on the local runtime only kill and pause are honest.
Written only against the public contract (chaos.target), as a third party would.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from chaos.errors import BadInput, SetupError
from chaos.target import (
    MAIN,
    BaseTarget,
    Cluster,
    Endpoints,
    NodeConfig,
    OptionSpec,
    Service,
)

from .client import EtcdClient
from .membership import EtcdMembership
from .cluster import (
    ELECTION_TIMEOUT_MS,
    HEARTBEAT_MS,
    check_timing,
    etcd_service,
    healthy,
    member_status,
)


class EtcdTarget(BaseTarget):
    """etcd 3.4 through its v3 HTTP/JSON gateway (see the module doc)."""

    name = "etcd"
    workloads = frozenset({"register", "set"})
    ports: Mapping[str, int] = {MAIN: 2379, "peer": 2380}
    packages = ("etcd-server",)
    binaries: Mapping[str, str] = {"etcd": "etcd-server"}
    supports_mesh = False
    default_runtime = "docker"
    #: `member remove` / `member add` through the v3 cluster API (`--nemesis membership`)
    membership = EtcdMembership()
    options: Mapping[str, OptionSpec] = {
        "read_consistency": OptionSpec(
            "linearizable", "linearizable: reads go through Raft (ReadIndex), safe; "
            "serializable: a member answers from its own state, stale under partition",
            ("linearizable", "serializable")),
        "endpoints": OptionSpec(
            "all", "which members a client sends ops to: all (a random member per op) or one "
            "(one member per client, as a single-endpoint etcd client)", ("all", "one")),
        "election_timeout_ms": OptionSpec(
            ELECTION_TIMEOUT_MS, "etcd --election-timeout (ms); etcd requires >= 5 x "
            "heartbeat_ms and <= 50000", type=int, min=1, max=50000),
        "heartbeat_ms": OptionSpec(HEARTBEAT_MS, "etcd --heartbeat-interval (ms)", type=int,
                                   min=1),
        "timeout": OptionSpec(1.0, "client timeout per request (s); a write with no answer "
                              "by then is info, a read a fail", type=float, min=0.05),
    }

    def __init__(self) -> None:
        #: member id -> name of the cluster this target instance runs (one per run)
        self._names: dict[str, str] = {}

    def validate_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        opts = super().validate_options(raw)
        bad = check_timing(int(opts["election_timeout_ms"]), int(opts["heartbeat_ms"]))
        if bad:
            raise BadInput(f"-O {bad}")
        return opts

    def services(self, node: NodeConfig) -> list[Service]:
        o = {**{k: s.default for k, s in self.options.items()}, **node.options}
        return [etcd_service(node, client_port=MAIN, peer_port="peer",
                             election_timeout_ms=int(o["election_timeout_ms"]),
                             heartbeat_ms=int(o["heartbeat_ms"]))]

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> EtcdClient:
        return EtcdClient(nodes, timeout=float(options.get("timeout", 1.0)),
                          read_consistency=str(options.get("read_consistency", "linearizable")),
                          endpoint_mode=str(options.get("endpoints", "all")))

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        return member_status(endpoints.port(node, MAIN), timeout, self._names)

    def setup_cluster(self, cluster: Cluster) -> None:
        """Wait until every member answers a linearizable read (a leader is elected and the
        member serves clients): the runtime's readiness check is only a TCP connect."""
        deadline = time.monotonic() + 60.0
        waiting = list(cluster.nodes)
        while waiting and time.monotonic() < deadline:
            waiting = [n for n in waiting if not healthy(cluster.endpoints[n], 2.0)]
            if waiting:
                time.sleep(0.2)
        if waiting:
            raise SetupError(f"etcd: members {', '.join(waiting)} did not serve a linearizable "
                             "read within 60 s (no leader elected?); see <data_dir>/etcd.out")

    def before_final_reads(self, cluster: Cluster, timeout: float) -> None:
        """Wait (up to `timeout`) until every member has applied all the leader had committed
        when asked, so each member's serializable final read shows the whole agreed state; a
        member that does not catch up in time is read as it is (its missing elements then
        show as divergent, which is what they are)."""
        deadline = time.monotonic() + timeout
        target: int | None = None
        while time.monotonic() < deadline:
            seen = {}
            for n in cluster.nodes:
                try:
                    seen[n] = member_status(cluster.endpoints[n], 1.0, self._names)
                except Exception:  # noqa: BLE001, S110 - not answering yet: asked again
                    pass
            leaders = [s for s in seen.values() if s["role"] == "leader"]
            if target is None and len(leaders) == 1:
                target = leaders[0]["index"]
            if (target is not None and len(seen) == len(cluster.nodes)
                    and all(s["applied"] >= target for s in seen.values())):
                return
            time.sleep(0.2)
