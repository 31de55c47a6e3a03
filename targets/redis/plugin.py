"""RedisTarget: Redis with Sentinel from Debian (redis-server, redis-sentinel) on the target
contract (chaos.target), written as a third party would.

Each node runs two services: "redis" (the data node, MAIN port) and "sentinel" (port
"sentinel"). n1 is the master at the first start, the others replicate it (`replicaof`), and
every node's Sentinel monitors it. Nodes and Sentinels announce their real addresses
(replica-announce-*, sentinel announce-*) and find each other by them, so peers can never
be pointed at proxies (supports_mesh=False): faults between nodes need the transparent mesh
(docker), and on the local runtime only kill and pause are honest (docs/targets.md, "Redis").

After a kill (NodeConfig.restart) the config files are NOT written again: Sentinel rewrites
sentinel.conf (epochs, known replicas and Sentinels) and sends CONFIG REWRITE to the data
nodes it reconfigures, so a restarted node comes back as what its files say, as in production
(an old master that missed the failover comes back a master until Sentinel converts it).

Term: a Redis data node has no term (a master does not know Sentinel's epoch), so status()
reports term None; two masters at once is then the no-term case the dual-leaders checker
judges an anomaly, and writes acknowledged by both are split-brain writes. Sentinel's config
epoch is recorded as "sentinel_epoch".
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from chaos.errors import BadInput
from chaos.target import MAIN, BaseTarget, Cluster, Endpoints, NodeConfig, OptionSpec, Service

from . import conf
from .client import RedisClient, converged, status as redis_status


def _int(default: int, help: str, lo: int, hi: int) -> OptionSpec:
    return OptionSpec(default, help, type=int, min=lo, max=hi)


class RedisTarget(BaseTarget):
    """Redis master/replicas with one Sentinel per node (module doc)."""

    name = "redis"
    workloads = frozenset({"register", "set"})
    ports: Mapping[str, int] = {MAIN: 6379, conf.SENTINEL: 26379}
    packages = ("redis-server", "redis-sentinel")
    binaries: Mapping[str, str] = {"redis-server": "redis-server",
                                   "redis-sentinel": "redis-sentinel"}
    controller_modules: Mapping[str, str] = {"redis": "redis>=5"}
    supports_mesh = False
    default_runtime = "docker"
    options: Mapping[str, OptionSpec] = {
        "quorum": _int(0, "Sentinels that must agree the master is down (0 = a majority of "
                       "the nodes)", 0, 99),
        "down_after_ms": _int(1000, "sentinel down-after-milliseconds: master silence before "
                              "a Sentinel thinks it down", 100, 600_000),
        "failover_timeout_ms": _int(3000, "sentinel failover-timeout (ms)", 500, 3_600_000),
        "min_replicas_to_write": _int(0, "min-replicas-to-write: the master refuses writes "
                                      "(NOREPLICAS) with fewer replicas acking within "
                                      "min_replicas_max_lag", 0, 99),
        "min_replicas_max_lag": _int(10, "min-replicas-max-lag (s)", 1, 3600),
        "wait_replicas": _int(0, "client-side WAIT numreplicas after each write (0 = no WAIT)",
                              0, 99),
        "wait_timeout_ms": _int(100, "WAIT timeout (ms); fewer replicas by then is still an "
                                "acknowledged write", 1, 60_000),
        "appendonly": OptionSpec("no", "appendonly (AOF persistence)", ("no", "yes")),
        "appendfsync": OptionSpec("everysec", "appendfsync", ("always", "everysec", "no")),
        "read_from": OptionSpec("master", "where reads go: the master, a replica Sentinel "
                                "lists, or any node", ("master", "replica", "any")),
        "refresh_ms": _int(1000, "the client asks its Sentinel for the master again at most "
                           "this often (0 = only after an error, as redis-py)", 0, 600_000),
        "ready_timeout": OptionSpec(30.0, "seconds each service may take to accept "
                                    "connections after it started (a large AOF loads slowly)",
                                    type=float, min=1, max=3600),
        "timeout": OptionSpec(1.0, "client socket timeout per command (s); no answer -> info",
                              type=float, min=0.01, max=60),
    }

    def validate_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        opts = super().validate_options(raw)
        if opts["failover_timeout_ms"] < opts["down_after_ms"]:
            raise BadInput(f"-O failover_timeout_ms={opts['failover_timeout_ms']}: must be at "
                           f"least down_after_ms ({opts['down_after_ms']})")
        return opts

    def check_cluster(self, options: Mapping[str, Any], nodes: tuple[str, ...]) -> None:
        """Options that must fit the cluster size (BadInput naming the option)."""
        replicas = len(nodes) - 1
        if int(options.get("quorum", 0)) > len(nodes):
            raise BadInput(f"-O quorum={options['quorum']}: at most the number of Sentinels "
                           f"({len(nodes)} nodes), or Sentinel never fails over")
        for key in ("min_replicas_to_write", "wait_replicas"):
            if int(options.get(key, 0)) > replicas:
                raise BadInput(f"-O {key}={options[key]}: at most the number of replicas "
                               f"({replicas} with {len(nodes)} nodes)")

    def services(self, node: NodeConfig) -> list[Service]:
        o = {k: s.default for k, s in self.options.items()}
        o.update(node.options)
        redis_conf = f"{node.data_dir}/redis.conf"
        sentinel_conf = f"{node.data_dir}/sentinel.conf"
        keep = node.restart       # keep what Redis/Sentinel rewrote (module doc)
        return [
            Service("redis", ["redis-server", redis_conf],
                    files={} if keep else {redis_conf: conf.redis_conf(node, o)},
                    ready_port=MAIN, ready_timeout=float(o["ready_timeout"])),
            Service("sentinel", ["redis-sentinel", sentinel_conf],
                    files={} if keep else {sentinel_conf: conf.sentinel_conf(node, o)},
                    ready_port=conf.SENTINEL, ready_timeout=float(o["ready_timeout"])),
        ]

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> RedisClient:
        return RedisClient(nodes, options)

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        return redis_status(node, endpoints, timeout)

    def before_final_reads(self, cluster: Cluster, timeout: float) -> None:
        """Wait (up to `timeout`) until the cluster converged: one master, every other node
        its replica with the link up and the master's replication offset reached. Sentinel
        converts an old master only some seconds after it is reachable again (it polls INFO
        every 10 s), and final reads taken before that would report replication lag as
        divergence. Not converged by then: the reads show what each node has."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not converged(cluster.endpoints, 1.0):
            time.sleep(0.2)
