"""targets/redis without processes: options, rendered configs, restart rule, contract checks."""
from __future__ import annotations

import pytest

from chaos.errors import BadInput
from chaos.plugins import validate
from chaos.target import MAIN, Addr, NodeConfig
from targets.redis import conf
from targets.redis.client import info, pairs, usable
from targets.redis.plugin import RedisTarget


def node(name: str, restart: bool = False, **options) -> NodeConfig:
    nodes = ("n1", "n2", "n3")
    real = {n: Addr(f"10.0.0.{i + 1}", 6379) for i, n in enumerate(nodes)}
    sent = {n: Addr(a.host, 26379) for n, a in real.items()}
    t = RedisTarget()
    return NodeConfig(name=name, listen=Addr("0.0.0.0", 6379), advertise=real[name],
                      peers={n: a for n, a in real.items() if n != name},
                      data_dir=f"/data/{name}", options=t.validate_options(options),
                      ports={MAIN: 6379, "sentinel": 26379},
                      peer_ports={n: {MAIN: real[n], "sentinel": sent[n]}
                                  for n in nodes if n != name},
                      advertise_ports={MAIN: real[name], "sentinel": sent[name]},
                      restart=restart, nodes=nodes)


def test_plugin_object_passes_validate():
    assert validate(RedisTarget()) == []


@pytest.mark.parametrize("raw, needle", [
    ({"quorum": "-1"}, "-O quorum=-1"),
    ({"down_after_ms": "5"}, "-O down_after_ms=5"),
    ({"wait_timeout_ms": "0"}, "-O wait_timeout_ms=0"),
    ({"read_from": "leader"}, "-O read_from=leader"),
    ({"appendfsync": "sometimes"}, "-O appendfsync=sometimes"),
    ({"min_replicas_to_write": "x"}, "-O min_replicas_to_write"),
    ({"nonsense": "1"}, "-O nonsense"),
    ({"down_after_ms": "5000", "failover_timeout_ms": "1000"}, "-O failover_timeout_ms=1000"),
])
def test_bad_options_name_the_option(raw, needle):
    with pytest.raises(BadInput) as exc:
        RedisTarget().validate_options(raw)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_defaults_and_typed_values():
    o = RedisTarget().validate_options({"wait_replicas": "1", "appendonly": "yes"})
    assert o["wait_replicas"] == 1 and o["appendonly"] == "yes" and o["quorum"] == 0


def test_first_start_master_and_replicas_announce_real_addresses():
    n1 = conf.redis_conf(node("n1"), node("n1").options)
    n2 = conf.redis_conf(node("n2"), node("n2").options)
    assert "replicaof" not in n1
    assert "replicaof 10.0.0.1 6379" in n2
    assert "replica-announce-ip 10.0.0.2" in n2 and "bind 0.0.0.0" in n2
    s3 = conf.sentinel_conf(node("n3"), node("n3").options)
    assert "sentinel monitor chaos 10.0.0.1 6379 2" in s3       # majority of 3
    assert "sentinel announce-ip 10.0.0.3" in s3 and "sentinel announce-port 26379" in s3
    assert "known-replica chaos 10.0.0.2 6379" in s3 and "known-replica chaos 10.0.0.3 6379" in s3


def test_options_reach_the_configs():
    cfg = node("n2", min_replicas_to_write="1", min_replicas_max_lag="5", quorum="3",
               down_after_ms="700", appendonly="yes")
    text = conf.redis_conf(cfg, cfg.options)
    assert "min-replicas-to-write 1" in text and "min-replicas-max-lag 5" in text
    assert "appendonly yes" in text
    s = conf.sentinel_conf(cfg, cfg.options)
    assert "10.0.0.1 6379 3" in s and "down-after-milliseconds chaos 700" in s


def test_restart_keeps_the_files_redis_and_sentinel_rewrote():
    t = RedisTarget()
    first = t.services(node("n1"))
    again = t.services(node("n1", restart=True))
    assert [s.name for s in first] == ["redis", "sentinel"]
    assert all(s.files for s in first) and not any(s.files for s in again)
    assert [s.argv for s in first] == [s.argv for s in again]
    assert first[1].ready_port == "sentinel" and first[0].ready_port == MAIN


def test_reply_parsers():
    assert pairs(["ip", "1.2.3.4", "port", "6379"]) == {"ip": "1.2.3.4", "port": "6379"}
    assert info("# Replication\r\nrole:slave\r\nmaster_port:7\r\n") == {"role": "slave",
                                                                         "master_port": "7"}
    assert usable("master") and not usable("master,s_down") and not usable("slave,o_down")


@pytest.mark.parametrize("raw, needle", [
    ({"quorum": "4"}, "-O quorum=4: at most the number of Sentinels (3 nodes)"),
    ({"wait_replicas": "3"}, "-O wait_replicas=3: at most the number of replicas (2 with 3"),
    ({"min_replicas_to_write": "3"}, "-O min_replicas_to_write=3"),
])
def test_options_beyond_the_cluster_size_are_bad_input(raw, needle):
    t = RedisTarget()
    with pytest.raises(BadInput) as exc:
        t.check_cluster(t.validate_options(raw), ("n1", "n2", "n3"))
    assert needle in str(exc.value)
    t.check_cluster(t.validate_options(raw), tuple(f"n{i}" for i in range(1, 6)))  # fits 5
