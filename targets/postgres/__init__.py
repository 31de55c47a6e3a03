"""PostgreSQL 15 streaming replication managed by Patroni, with etcd as its DCS (issue 13)."""
