"""redis.conf and sentinel.conf for one node, rendered from its NodeConfig and the options.

Every address a node announces is its REAL address (`NodeConfig.advertise*`): Sentinel tells
replicas, other Sentinels and clients where the master is by the addresses it learnt, so on
the transparent mesh (nat rules steering node->node traffic through a proxy per link) those
addresses must be the ones the rules match. Every address a node dials is `NodeConfig.peer`,
which is the real address when the target declares supports_mesh=False.
"""
from __future__ import annotations

from typing import Any, Mapping

from chaos.target import MAIN, Addr, NodeConfig

#: the name Sentinel monitors the master under (clients ask for it)
MASTER_NAME = "chaos"
SENTINEL = "sentinel"


def first_master(node: NodeConfig) -> str:
    """The master at the first start: the first node of the cluster (n1)."""
    return (node.nodes or tuple(sorted([node.name, *node.peers])))[0]


def quorum(options: Mapping[str, Any], n_nodes: int) -> int:
    """Sentinels that must agree the master is down: -O quorum, or a majority when 0."""
    q = int(options.get("quorum") or 0)
    return q if q > 0 else n_nodes // 2 + 1


def _advertise(node: NodeConfig, name: str) -> Addr:
    addr = node.advertise_ports.get(name)
    if addr is not None:
        return addr
    host = (node.advertise or node.listen).host
    return Addr(host, node.port(name))


def redis_conf(node: NodeConfig, options: Mapping[str, Any]) -> str:
    """The data node's config: a master on n1, a replica of n1 elsewhere (first start only;
    later Sentinel rewrites replicaof with CONFIG REWRITE and the file is kept)."""
    me = _advertise(node, MAIN)
    lines = [
        f"bind {node.listen.host}",
        f"port {node.port(MAIN)}",
        "protected-mode no",
        "daemonize no",
        'logfile ""',
        f"dir {node.data_dir}",
        f"appendonly {options.get('appendonly', 'no')}",
        f"appendfsync {options.get('appendfsync', 'everysec')}",
        f"min-replicas-to-write {int(options.get('min_replicas_to_write', 0))}",
        f"min-replicas-max-lag {int(options.get('min_replicas_max_lag', 10))}",
        # a full resync after a failover should not wait 5 s for more replicas to join
        "repl-diskless-sync-delay 0",
        f"replica-announce-ip {me.host}",
        f"replica-announce-port {me.port}",
    ]
    master = first_master(node)
    if node.name != master:
        m = node.peer(master, MAIN)
        lines.append(f"replicaof {m.host} {m.port}")
    return "\n".join(lines) + "\n"


def sentinel_conf(node: NodeConfig, options: Mapping[str, Any]) -> str:
    """One Sentinel per node, all monitoring n1 at the first start (Sentinel rewrites the
    file as it learns replicas, other Sentinels and failovers; the file is kept on restart)."""
    me = _advertise(node, SENTINEL)
    master = first_master(node)
    m = node.peer(master, MAIN) if node.name != master else _advertise(node, MAIN)
    names = node.nodes or tuple(sorted([node.name, *node.peers]))
    n = len(names)
    # the replicas, as Sentinel would learn them from the master's INFO (polled every 10 s):
    # listed up front so a failover early in a short run has candidates
    known = [f"sentinel known-replica {MASTER_NAME} {a.host} {a.port}"
             for a in (_advertise(node, MAIN) if r == node.name else node.peer(r, MAIN)
                       for r in names if r != master)]
    return "\n".join([
        f"bind {node.listen.host}",
        f"port {node.port(SENTINEL)}",
        "protected-mode no",
        "daemonize no",
        'logfile ""',
        f"dir {node.data_dir}",
        f"sentinel announce-ip {me.host}",
        f"sentinel announce-port {me.port}",
        f"sentinel monitor {MASTER_NAME} {m.host} {m.port} {quorum(options, n)}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {int(options.get('down_after_ms', 1000))}",
        f"sentinel failover-timeout {MASTER_NAME} {int(options.get('failover_timeout_ms', 3000))}",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
        *known,
    ]) + "\n"
