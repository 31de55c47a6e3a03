"""PostgresTarget: PostgreSQL 15 + Patroni + etcd as a chaos target (entry point `postgres`).

Written on the public contract (chaos.target) only, as a third party would. Each node runs
two services, in order:

1. "etcd": a member of the etcd cluster Patroni uses as its DCS (one member per node, so the
   DCS is partitioned together with the databases);
2. "patroni": Patroni, which bootstraps or clones PostgreSQL (pg_basebackup), runs it as its
   child (as the `postgres` user: PostgreSQL refuses to run as root), holds the leader key
   in etcd and promotes/demotes/rewinds the database.

Ports: MAIN = PostgreSQL (5432), "api" = Patroni's REST API (8008), "etcd" (2379) and
"etcd_peer" (2380). Patroni and etcd announce their real addresses, so the explicit proxy
mesh cannot steer them (supports_mesh=False): on docker the transparent mesh puts every
link through its proxy; on the local runtime only kill and pause are honest faults
(docs/targets.md, "PostgreSQL + Patroni").
"""
from __future__ import annotations

from typing import Any, Mapping

from chaos.errors import BadInput
from targets.etcd.cluster import etcd_service

from chaos.target import MAIN, BaseTarget, Cluster, Endpoints, NodeConfig, OptionSpec, Service

from . import config as pgconf
from . import launcher
from .client import PostgresClient
from .rest import cluster_status, node_status
from .setup import create_tables, wait_replicated, wait_streaming


class PostgresTarget(BaseTarget):
    """PostgreSQL streaming replication with Patroni failover (issue 13)."""

    name = "postgres"
    workloads = frozenset({"register", "set"})
    ports: Mapping[str, int] = {MAIN: 5432, "api": 8008, "etcd": 2379, "etcd_peer": 2380}
    packages = ("postgresql", "patroni", "etcd-server")
    binaries: Mapping[str, str] = {"patroni": "patroni", "etcd": "etcd-server",
                                   f"{pgconf.BIN_DIR}/postgres": "postgresql"}
    controller_modules: Mapping[str, str] = {"psycopg": "psycopg[binary]>=3.1"}
    supports_mesh = False
    default_runtime = "docker"
    #: the first primary needs an etcd quorum, then initdb and the post_bootstrap script:
    #: 10-20 s on a loaded machine, more than the contract's default 30 s leaves spare
    startup_timeout = 90.0
    # Short timings by default, so a failover fits a 60 s run; Patroni's own defaults are
    # ttl=30, loop_wait=10, retry_timeout=10.
    options: Mapping[str, OptionSpec] = {
        "synchronous_mode": OptionSpec(
            "off", "off: asynchronous standbys (a failover can lose committed transactions, "
            "bounded by maximum_lag_on_failover); on: Patroni keeps one synchronous standby "
            "but drops to async when none is left; strict: never commit without one",
            ("off", "on", "strict")),
        "maximum_lag_on_failover": OptionSpec(
            1048576, "bytes of WAL a standby may lag and still be promoted", type=int, min=0),
        "ttl": OptionSpec(10, "seconds the leader key lives in etcd without a renewal",
                          type=int, min=2),
        "loop_wait": OptionSpec(2, "seconds between Patroni's HA loop runs", type=int, min=1),
        "retry_timeout": OptionSpec(4, "seconds Patroni retries etcd and PostgreSQL before a "
                                    "primary demotes itself", type=int, min=1),
        "synchronous_commit": OptionSpec(
            "on", "PostgreSQL's synchronous_commit (remote_apply/on/remote_write/local/off)",
            ("remote_apply", "on", "remote_write", "local", "off")),
        "read_from": OptionSpec("primary", "where reads go: primary (the read-write "
                                "session) or any node, standbys included (stale by design)",
                                ("primary", "any")),
        "dcs": OptionSpec(
            "etcd3", "Patroni's etcd driver: etcd3 (v3 API, leases) or etcd (v2 API, "
            "compare-and-swap on the leader key; the safe choice with Patroni < 3.0.3, whose "
            "etcd3 driver can overwrite a newer leader's key: docs/targets.md)",
            pgconf.DCS_SECTIONS),
        "timeout": OptionSpec(1.0, "client timeout per statement (s); no answer -> info",
                              type=float, min=0.1),
    }

    def validate_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """The default validation, then Patroni's timing rule (loop_wait + 2*retry_timeout
        <= ttl: a primary that cannot renew its key must give up before the key expires)."""
        opts = super().validate_options(raw)
        need = opts["loop_wait"] + 2 * opts["retry_timeout"]
        if need > opts["ttl"]:
            raise BadInput(f"-O ttl={opts['ttl']}: Patroni needs loop_wait + 2*retry_timeout "
                           f"<= ttl, got {opts['loop_wait']} + 2*{opts['retry_timeout']} = "
                           f"{need}")
        return opts

    def check_cluster(self, options: Mapping[str, Any], nodes: tuple[str, ...]) -> None:
        """synchronous_mode needs a standby to be synchronous: with one node, `strict`
        never commits and `on` is asynchronous in all but name."""
        if options.get("synchronous_mode") != "off" and len(nodes) < 2:
            raise BadInput(f"-O synchronous_mode={options['synchronous_mode']}: needs a "
                           f"standby, i.e. --nodes 2 or more (got {len(nodes)})")

    def services(self, node: NodeConfig) -> list[Service]:
        opts = {k: s.default for k, s in self.options.items()}
        opts.update(node.options)
        patroni = Service("patroni", launcher.argv(node.data_dir, f"{node.data_dir}/patroni.yml"),
                          files={"patroni.yml": pgconf.render_text(node, opts),
                                 launcher.FILE: launcher.SOURCE,
                                 pgconf.POST_BOOTSTRAP: pgconf.post_bootstrap_script()},
                          # no readiness wait: Patroni opens its REST API only once etcd
                          # has a quorum, i.e. after the next nodes' etcd members started;
                          # setup_cluster waits for the whole cluster instead
                          ready_port=None, user=pgconf.SUPERUSER)
        etcd = etcd_service(node, client_port="etcd", peer_port="etcd_peer",
                            token="chaos-postgres",
                            extra_args=pgconf.etcd_args(str(opts["dcs"])))
        return [etcd, patroni]

    def client(self, endpoints: Endpoints, options: Mapping[str, Any]) -> PostgresClient:
        return PostgresClient(endpoints, timeout=float(options.get("timeout", 1.0)),
                              read_from=str(options.get("read_from", "primary")))

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        return node_status(node, endpoints, timeout)

    def setup_cluster(self, cluster: Cluster) -> None:
        """Wait for one primary and every standby streaming, then create the tables."""
        primary = wait_streaming(cluster, timeout=120.0)
        create_tables(cluster.endpoints[primary])

    def before_final_reads(self, cluster: Cluster, timeout: float) -> None:
        """Wait (best effort) until every standby has replayed the primary's WAL, so the
        per-node final reads compare replicas that had the chance to converge."""
        wait_replicated(cluster, timeout)


__all__ = ["PostgresTarget", "cluster_status"]
