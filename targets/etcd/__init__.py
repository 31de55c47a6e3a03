"""etcd (Raft) as a chaos target: Debian's etcd-server 3.4, driven through its v3 HTTP/JSON
gateway (plugin.EtcdTarget); cluster.py builds members for other targets too (Patroni's DCS)."""
