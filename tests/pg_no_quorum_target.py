"""PostgresTarget whose cluster can never elect a primary (for the setup-error test).

Only n1 runs an etcd member; the other nodes run Patroni alone. etcd's initial cluster names
three members, so n1's member never has a quorum, no Patroni can take the leader key and no
primary is ever elected: `chaos run` must stop with exit 3 naming what each node said, and
leave nothing running. Its startup_timeout is 5 s instead of the real target's 90 s, so the
test is short: no wait can elect a primary here, and the message names every node whatever
the wait (chaos.phases.wait_for_leader asks each node on every pass). Everything else
(services, files, users, status, teardown) is the real target's.
"""
from __future__ import annotations

from chaos.target import NodeConfig, Service
from targets.postgres.plugin import PostgresTarget


class NoQuorumPostgres(PostgresTarget):
    name = "postgres-no-quorum"
    startup_timeout = 5.0

    def services(self, node: NodeConfig) -> list[Service]:
        services = super().services(node)
        return services if node.name == "n1" else [s for s in services if s.name != "etcd"]
