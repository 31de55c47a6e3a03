"""Patroni's configuration for one node (patroni.yml), rendered from a chaos NodeConfig.

The file is written as JSON: YAML is a superset of JSON, Patroni reads it with yaml.safe_load,
and the controller then needs no YAML library. Patroni's own names are used everywhere, so a
reader who knows Patroni's configuration reference recognises every key:

- `scope` (the cluster name, one per test), `name` (the chaos node name: Patroni's member
  names, the REST API's "leader" and chaos's histories then speak the same names);
- `restapi.listen` / `connect_address` on the node's "api" port;
- `etcd3.hosts` (or `etcd.hosts` with -O dcs=etcd): the node's own etcd member first, then
  its peers' (Patroni discovers the rest from the member list); `etcd3` talks to etcd's v3
  JSON gateway, `etcd` to its v2 API (see `DCS_SECTIONS` for why both exist);
- `bootstrap.dcs`: the cluster-wide settings Patroni stores in etcd on bootstrap (ttl,
  loop_wait, retry_timeout, maximum_lag_on_failover, synchronous_mode(_strict), and the
  PostgreSQL parameters every member must share);
- `postgresql`: where this member listens and what it announces, its data directory
  (`<node data dir>/pgdata`), the Debian binaries, `use_pg_rewind` (an old primary rejoins by
  rewinding its diverged WAL instead of being re-cloned).

Standbys bootstrap with pg_basebackup from the primary (Patroni's default create_replica
method), stream with replication slots, and catch up from the primary's WAL after a restart.
"""
from __future__ import annotations

import json
import shlex
from typing import Any, Mapping

from chaos.target import MAIN, NodeConfig

#: the Debian postgresql package's binaries (postgresql-15 in bookworm)
BIN_DIR = "/usr/lib/postgresql/15/bin"
#: Patroni's cluster name (one cluster per test, so a constant is enough)
SCOPE = "chaos"
#: the database user chaos's client and setup use (the superuser Patroni bootstraps)
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
#: authentication is `trust` (see pg_hba below); the password only satisfies Patroni's schema
PASSWORD = "chaos"
#: a unix socket path must fit in sun_path (107 bytes) with "/.s.PGSQL.NNNNN" appended
_MAX_SOCKET_DIR = 90
#: the post_bootstrap script's file name in the node's data dir
POST_BOOTSTRAP = "create_tables.sh"


#: -O dcs=...: Patroni's configuration section for its etcd driver. `etcd3` (etcd's v3 API,
#: leases) is what Patroni 3 recommends for etcd 3. `etcd` (the v2 API, TTL keys; etcd 3.4
#: serves it with --enable-v2) renews the leader key by compare-and-swap on its value, whereas
#: Patroni 3.0.2's etcd3 driver (Debian bookworm's) re-creates an expired leader key with an
#: unconditional put when its cached view still names it the leader: a primary resumed after
#: a pause longer than ttl can overwrite the key its promoted standby just took (fixed in
#: Patroni 3.0.3, commit "Make sure the leader key isn't unconditionally overwritten");
#: docs/targets.md, "PostgreSQL + Patroni"
DCS_SECTIONS = ("etcd3", "etcd")


def etcd_args(dcs: str) -> list[str]:
    """Extra etcd flags the chosen Patroni driver needs (the v2 API is off by default in
    etcd 3.4)."""
    return ["--enable-v2"] if dcs == "etcd" else []


def synchronous_flags(mode: str) -> tuple[bool, bool]:
    """-O synchronous_mode=off|on|strict -> Patroni's (synchronous_mode,
    synchronous_mode_strict)."""
    return mode in ("on", "strict"), mode == "strict"


def pg_hba() -> list[str]:
    """Who may connect: everyone, without a password (`trust`), replication included.

    The cluster lives on a private test network (127.0.0.1 or the test's own docker network),
    and the source address a peer's connection arrives from depends on the fault mesh (on
    the transparent mesh it is the proxy's), so a per-address rule would encode the mesh, not
    PostgreSQL; `trust` keeps authentication out of what is being tested.
    """
    return ["local all all trust",
            "local replication all trust",
            "host all all 0.0.0.0/0 trust",
            "host replication all 0.0.0.0/0 trust",
            "host all all ::/0 trust",
            "host replication all ::/0 trust"]


def render(node: NodeConfig, opts: Mapping[str, Any]) -> dict[str, Any]:
    """Patroni's configuration for `node` as a dict (see the module doc for every section)."""
    listen_host = node.listen.host
    adv = node.advertise_ports
    main_adv = adv.get(MAIN) or node.advertise or node.listen
    api_adv = adv.get("api")
    api_host = api_adv.host if api_adv else main_adv.host
    api_port = api_adv.port if api_adv else node.port("api")
    own_etcd = f"127.0.0.1:{node.port('etcd')}"
    peers = [str(node.peer(p, "etcd")) for p in node.nodes if p != node.name]
    sync, strict = synchronous_flags(str(opts["synchronous_mode"]))
    socket_dir = node.data_dir if len(node.data_dir) <= _MAX_SOCKET_DIR else "/tmp"
    parameters = {
        "wal_level": "replica",
        "hot_standby": "on",
        "wal_log_hints": "on",                # pg_rewind needs it (no data checksums)
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_keep_size": "256MB",
        "synchronous_commit": str(opts["synchronous_commit"]),
        "max_connections": 100,
        "shared_buffers": "32MB",             # three clusters share a small test machine
        "fsync": "on",
    }
    return {
        "scope": SCOPE,
        "name": node.name,
        "log": {"level": "INFO"},
        "restapi": {"listen": f"{listen_host}:{node.port('api')}",
                    "connect_address": f"{api_host}:{api_port}"},
        str(opts.get("dcs", "etcd3")): {"hosts": [own_etcd, *peers], "protocol": "http"},
        "bootstrap": {
            "dcs": {
                "ttl": int(opts["ttl"]),
                "loop_wait": int(opts["loop_wait"]),
                "retry_timeout": int(opts["retry_timeout"]),
                "maximum_lag_on_failover": int(opts["maximum_lag_on_failover"]),
                "synchronous_mode": sync,
                "synchronous_mode_strict": strict,
                "postgresql": {"use_pg_rewind": True, "use_slots": True,
                               "parameters": parameters},
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            # the workloads' tables, created by the primary that bootstraps the cluster
            # (so they exist before any client connects, and replicate with the rest)
            "post_bootstrap": f"/bin/sh {node.data_dir}/{POST_BOOTSTRAP}",
            "pg_hba": pg_hba(),
        },
        "postgresql": {
            "listen": f"{listen_host}:{node.port(MAIN)}",
            "connect_address": f"{main_adv.host}:{main_adv.port}",
            "data_dir": f"{node.data_dir}/pgdata",
            "bin_dir": BIN_DIR,
            "pgpass": f"{node.data_dir}/pgpass",
            "use_pg_rewind": True,
            # a standby's clone starts at once instead of after a spread checkpoint
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": PASSWORD},
                "replication": {"username": REPLICATION_USER, "password": PASSWORD},
            },
            "parameters": {"unix_socket_directories": socket_dir},
            "pg_hba": pg_hba(),
        },
        "watchdog": {"mode": "off"},          # no /dev/watchdog in containers or CI
    }


def post_bootstrap_script() -> str:
    """The post_bootstrap script: Patroni runs it once, on the member that ran initdb, with a
    connection string to the new primary as its argument."""
    from .client import DDL

    statements = " ".join(f"-c {shlex.quote(stmt)}" for stmt in DDL)
    return f'#!/bin/sh\nexec {BIN_DIR}/psql "$1" -v ON_ERROR_STOP=1 {statements}\n'


def render_text(node: NodeConfig, opts: Mapping[str, Any]) -> str:
    """patroni.yml's content (JSON, which YAML parsers read as YAML)."""
    return json.dumps(render(node, opts), indent=2, sort_keys=True) + "\n"
