"""Building an etcd member for a chaos node, and asking a member what it sees.

Reusable by any target that runs etcd on its nodes (the etcd target itself, and the
PostgreSQL+Patroni target for Patroni's DCS):

    from targets.etcd.cluster import etcd_service, member_status
    services = [etcd_service(node, client_port="etcd", peer_port="etcd-peer"), ...]

Peer URLs. etcd derives every member's id from its peer URLs (and the cluster token) and
checks the URLs peers announce against its member list, so every member must be told the
SAME peer URL for each member: its real advertised address. Peers therefore cannot be
pointed at per-link proxies (a target using this sets `supports_mesh = False`); on Docker the
transparent mesh steers those real addresses through a proxy per link with nat rules, so
every network fault still applies. On the local runtime there is no mesh for such targets:
only kill and pause faults are honest there.

Restarts. A member killed and started again gets the same argv (NodeConfig.restart True):
etcd finds its write-ahead log in the data dir and restarts from it, rejoining the cluster
with its own data and member id; the bootstrap flags (--initial-cluster*) are then ignored
by etcd. `--initial-cluster-state new` is passed on every start: a member killed before its
first WAL write bootstraps again into the same cluster id (ids are deterministic), which needs
no peer to be reachable, where `existing` would need one. The exception: a member added back
by a membership change (NodeConfig.rejoin, after `member add`; targets/etcd/membership.py)
starts with an empty data dir and `existing`, so it joins the running cluster under the new
member id and gets its data from the leader (a snapshot, then the log).
"""
from __future__ import annotations

import os
from typing import Any

from chaos.target import MAIN, Addr, NodeConfig, Service

from .gateway import call_once

#: etcd's own defaults (ms); etcd requires election >= 5 x heartbeat and election <= 50000
ELECTION_TIMEOUT_MS = 1000
HEARTBEAT_MS = 100
MAX_ELECTION_TIMEOUT_MS = 50000


def check_timing(election_timeout_ms: int, heartbeat_ms: int) -> str | None:
    """etcd's own validation of its Raft timing (etcdmain refuses to start otherwise),
    mirrored so a bad option is one line before anything starts; None when fine."""
    if heartbeat_ms <= 0:
        return f"heartbeat_ms={heartbeat_ms}: must be > 0"
    if election_timeout_ms <= 0:
        return f"election_timeout_ms={election_timeout_ms}: must be > 0"
    if 5 * heartbeat_ms > election_timeout_ms:
        return (f"election_timeout_ms={election_timeout_ms}: etcd requires at least 5 times "
                f"heartbeat_ms ({heartbeat_ms}), i.e. >= {5 * heartbeat_ms}")
    if election_timeout_ms > MAX_ELECTION_TIMEOUT_MS:
        return (f"election_timeout_ms={election_timeout_ms}: etcd allows at most "
                f"{MAX_ELECTION_TIMEOUT_MS}")
    return None


def advertised(node: NodeConfig, port: str) -> Addr:
    """This node's real address for its port `port` (what it announces to the others)."""
    if port in node.advertise_ports:
        return node.advertise_ports[port]
    host = (node.advertise or node.listen).host
    if host in ("0.0.0.0", "::", ""):
        raise ValueError(f"node {node.name}: no advertised address for port {port!r} "
                         f"(the runtime gave only the bind address {host})")
    return Addr(host, node.port(port))


def url(addr: Addr) -> str:
    return f"http://{addr.host}:{addr.port}"


def initial_cluster(node: NodeConfig, peer_port: str = "peer") -> str:
    """etcd's --initial-cluster: "n1=http://h1:p1,n2=..." over every node, in order.

    This node's own entry is its advertised peer URL; each other's is the address this node
    dials for that peer's `peer_port`, which must be the peer's real address (see the module
    doc: supports_mesh False). Every member computes the same string.
    """
    names = node.nodes or tuple(sorted({node.name, *node.peers, *node.peer_ports}))
    parts = []
    for name in names:
        addr = advertised(node, peer_port) if name == node.name else node.peer(name, peer_port)
        parts.append(f"{name}={url(addr)}")
    return ",".join(parts)


def etcd_service(node: NodeConfig, *, client_port: str = MAIN, peer_port: str = "peer",
                 data_subdir: str = "etcd", election_timeout_ms: int = ELECTION_TIMEOUT_MS,
                 heartbeat_ms: int = HEARTBEAT_MS, name: str = "etcd",
                 token: str = "chaos-etcd", extra_args: list[str] | None = None) -> Service:
    """The etcd member service of `node` (one member per node, named after the node).

    client_port / peer_port: the node's named ports for etcd's client API (and its HTTP/JSON
    gateway) and for Raft traffic; data_subdir: the member's data dir under node.data_dir
    (kept across restarts); election_timeout_ms / heartbeat_ms: Raft timing (ValueError when
    etcd would refuse it, see `check_timing`); name: the service name; token: the initial
    cluster token (ids derive from it: distinct clusters need distinct tokens); extra_args:
    more etcd flags. Ready when the client port accepts connections.
    """
    bad = check_timing(election_timeout_ms, heartbeat_ms)
    if bad:
        raise ValueError(bad)
    bind = node.listen.host
    argv = [
        "etcd", "--name", node.name,
        "--data-dir", os.path.join(node.data_dir, data_subdir),
        "--listen-client-urls", url(Addr(bind, node.port(client_port))),
        "--advertise-client-urls", url(advertised(node, client_port)),
        "--listen-peer-urls", url(Addr(bind, node.port(peer_port))),
        "--initial-advertise-peer-urls", url(advertised(node, peer_port)),
        "--initial-cluster", initial_cluster(node, peer_port),
        # a member added back by a membership change joins the running cluster
        "--initial-cluster-state", "existing" if node.rejoin else "new",
        "--initial-cluster-token", token,
        "--election-timeout", str(int(election_timeout_ms)),
        "--heartbeat-interval", str(int(heartbeat_ms)),
        "--logger", "zap", "--log-outputs", "stderr",
        *(extra_args or []),
    ]
    return Service(name, argv, ready_port=client_port, ready_timeout=60.0)


def _ids(text: Any) -> str:
    return str(text or "0")


#: Raft's node states (raft.StateType's names) -> the contract's roles
_ROLES = {"StateLeader": "leader", "StateFollower": "follower",
          "StateCandidate": "candidate", "StatePreCandidate": "candidate"}


def members(addr: Addr, timeout: float) -> dict[str, str]:
    """member id (decimal string, as the gateway writes it) -> member name; a member added
    but not started yet has no name: left out (so a name cache never keeps it nameless)."""
    reply = call_once(addr, "/v3/cluster/member/list", {}, timeout)
    return {_ids(m.get("ID")): str(m["name"]) for m in reply.get("members", [])
            if m.get("name")}


def _name(addr: Addr, member_id: str, timeout: float, names: dict[str, str]) -> str | None:
    if member_id == "0":
        return None
    if member_id not in names:
        names.update(members(addr, timeout))
    return names.get(member_id) or None


def member_status(addr: Addr, timeout: float,
                  names: dict[str, str] | None = None) -> dict[str, Any]:
    """One member's own view, in the target contract's status shape.

    {"role": "leader" | "follower" | "candidate", "term": the Raft term (int), "leader": the
    leader's member name or None, "index" and "log_position": the Raft commit index,
    "applied": the applied index, "member": this member's name}.

    Source: the Raft node's own status snapshot, which etcd publishes as "raft.status" on
    its client port's /debug/vars (term, lead and state read together, under the Raft
    node's lock). Not /v3/maintenance/status: in etcd 3.4 its raftTerm is the term of the
    last APPLIED entry, so a newly elected leader reports itself leader in its predecessor's
    term until it applies its first entry, which the dual-leaders checker would rightly
    call two leaders in one term (seen: 170 ms after a failover). Answered from the member's
    local state (no quorum needed), so an isolated member still answers. Raises
    gateway.NotSent / NoAnswer / EtcdError when the member does not answer.

    `names`: a member id -> name cache for ONE cluster (ids never change within a cluster,
    so the member list is fetched only for an id not seen yet); None: fetched every time.
    """
    names = {} if names is None else names
    raft = call_once(addr, "/debug/vars", None, timeout, method="GET").get("raft.status")
    if not isinstance(raft, dict) or "term" not in raft:
        raise ValueError(f"{addr}: /debug/vars has no raft.status")
    me, lead = str(int(raft.get("id") or "0", 16)), str(int(raft.get("lead") or "0", 16))
    return {"role": _ROLES.get(str(raft.get("raftState")), "unknown"),
            "term": int(raft["term"]),
            "leader": _name(addr, lead, timeout, names),
            "index": int(raft.get("commit") or 0),
            "log_position": int(raft.get("commit") or 0),
            "applied": int(raft.get("applied") or 0),
            "member": _name(addr, me, timeout, names)}


def healthy(addr: Addr, timeout: float) -> bool:
    """True when the member knows a leader and answers a quorum read (what etcd's /health
    checks); False on any failure to answer."""
    try:
        reply = call_once(addr, "/v3/kv/range", {"key": "aGVhbHRo"}, timeout)
    except Exception:  # noqa: BLE001 - any failure to answer is "not healthy"
        return False
    return "header" in reply
