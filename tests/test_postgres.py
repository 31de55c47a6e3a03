"""PostgresTarget's logic without processes: options, patroni.yml, status mapping, outcomes."""
from __future__ import annotations

import json

import pytest

from chaos.errors import BadInput
from chaos.plugins import load_target, resolve_ref, validate
from chaos.target import MAIN, Addr, NodeConfig, check_status
from targets.postgres import client as pgclient
from targets.postgres.plugin import PostgresTarget
from targets.postgres.rest import cluster_leader, to_status


def _node(name: str = "n1", host: str = "10.0.0.1", **opts: object) -> NodeConfig:
    target = PostgresTarget()
    hosts = {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3"}
    ports = dict(target.ports)
    return NodeConfig(
        name=name, listen=Addr("0.0.0.0", ports[MAIN]), peers={},
        data_dir=f"/data/{name}",
        options=target.validate_options({k: str(v) for k, v in opts.items()}),
        advertise=Addr(host, ports[MAIN]), ports=ports,
        peer_ports={p: {k: Addr(h, v) for k, v in ports.items()}
                    for p, h in hosts.items() if p != name},
        advertise_ports={k: Addr(host, v) for k, v in ports.items()},
        nodes=("n1", "n2", "n3"))


def test_registered_and_valid_against_the_contract():
    target = load_target(resolve_ref("postgres"))
    assert target.name == "postgres"
    assert validate(target) == []
    assert target.supports_mesh is False and target.default_runtime == "docker"
    assert set(target.packages) == {"postgresql", "patroni", "etcd-server"}


def test_timing_rule_names_patroni_rule():
    target = PostgresTarget()
    with pytest.raises(BadInput, match=r"loop_wait \+ 2\*retry_timeout <= ttl"):
        target.validate_options({"ttl": "10", "loop_wait": "3", "retry_timeout": "4"})
    ok = target.validate_options({"ttl": "30", "loop_wait": "10", "retry_timeout": "10"})
    assert ok["ttl"] == 30


@pytest.mark.parametrize("raw", [{"synchronous_mode": "maybe"}, {"read_from": "standby"},
                                 {"ttl": "x"}, {"bogus": "1"}])
def test_bad_options_are_bad_input(raw):
    with pytest.raises(BadInput, match=next(iter(raw))):
        PostgresTarget().validate_options(raw)


@pytest.mark.parametrize("mode,flags", [("off", (False, False)), ("on", (True, False)),
                                        ("strict", (True, True))])
def test_patroni_yml_sync_flags_and_addresses(mode, flags):
    node = _node(synchronous_mode=mode)
    services = PostgresTarget().services(node)
    assert [s.name for s in services] == ["etcd", "patroni"]
    patroni = services[1]
    assert patroni.user == "postgres"
    conf = json.loads(patroni.files["patroni.yml"])
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["synchronous_mode"], dcs["synchronous_mode_strict"]) == flags
    assert dcs["ttl"] + 0 >= dcs["loop_wait"] + 2 * dcs["retry_timeout"]
    assert conf["name"] == "n1"
    assert conf["postgresql"]["connect_address"] == "10.0.0.1:5432"
    assert conf["restapi"]["connect_address"] == "10.0.0.1:8008"
    assert conf["postgresql"]["data_dir"] == "/data/n1/pgdata"
    assert conf["postgresql"]["use_pg_rewind"] is True
    assert conf["etcd3"]["hosts"] == ["127.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
    assert any(r.startswith("host replication") for r in conf["postgresql"]["pg_hba"])
    # the etcd member announces the real peer URLs of every node
    etcd = services[0].argv
    cluster = etcd[etcd.index("--initial-cluster") + 1]
    assert cluster == ("n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,"
                       "n3=http://10.0.0.3:2380")


@pytest.mark.parametrize("dcs,v2", [("etcd3", False), ("etcd", True)])
def test_dcs_option_picks_patronis_etcd_driver_and_the_etcd_api_it_needs(dcs, v2):
    """-O dcs=etcd renders Patroni's `etcd` (v2) section and turns etcd's v2 API on;
    the default etcd3 has only the etcd3 section and no v2 API."""
    services = PostgresTarget().services(_node(dcs=dcs))
    conf = json.loads(services[1].files["patroni.yml"])
    assert conf[dcs]["hosts"] == ["127.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
    assert ({"etcd", "etcd3"} - {dcs}).isdisjoint(conf)
    assert ("--enable-v2" in services[0].argv) is v2


def test_dcs_option_rejects_an_unknown_driver():
    with pytest.raises(BadInput, match="dcs"):
        PostgresTarget().validate_options({"dcs": "consul"})


def test_launcher_keeps_postgres_in_the_process_group():
    patroni = PostgresTarget().services(_node())[1]
    source = patroni.files["patroni_launcher.py"]
    assert "os.setsid = lambda: None" in source
    # the no-op must be at module level: multiprocessing's spawn re-imports the file as
    # __mp_main__, where the __main__ block does not run
    head = source.split('if __name__ == "__main__":')[0]
    assert "os.setsid = lambda: None" in head
    assert patroni.argv[1] == "/data/n1/patroni_launcher.py"


@pytest.mark.parametrize("answer,role,term", [
    ({"state": "running", "role": "master", "timeline": 3, "xlog": {"location": 10}}, "leader", 3),
    ({"state": "running", "role": "primary", "timeline": 4}, "leader", 4),
    ({"state": "running", "role": "replica", "timeline": 3,
      "xlog": {"replayed_location": 9, "received_location": 10}}, "follower", 3),
    ({"state": "starting", "role": "replica"}, "unknown", None),
    ({"state": "stopped", "role": "uninitialized"}, "unknown", None),
])
def test_status_mapping(answer, role, term):
    status = check_status("n2", to_status("n2", answer))
    assert status["role"] == role and status["term"] == term
    assert status["leader"] == ("n2" if role == "leader" else None)


def test_cluster_leader_from_members():
    assert cluster_leader({"members": [{"name": "n1", "role": "replica"},
                                       {"name": "n3", "role": "leader"}]}) == "n3"
    assert cluster_leader({"members": [{"name": "n1", "role": "sync_standby"}]}) is None
    assert cluster_leader(None) is None


class _Exc(Exception):
    def __init__(self, sqlstate: str | None):
        super().__init__("x")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("state,not_applied", [
    ("25006", True),    # read-only transaction: the standby refused the write
    ("40001", True),    # serialization failure
    ("23505", True),    # unique violation
    ("57P01", False),   # admin shutdown: the commit may have happened
    ("08006", False),   # connection failure mid-statement
    (None, False),      # no SQLSTATE at all (socket gone): unknown
])
def test_only_pre_commit_errors_are_fail(state, not_applied):
    assert pgclient._not_applied(_Exc(state)) is not_applied


def test_conninfo_is_multi_host_read_write():
    info = pgclient.conninfo([Addr("h1", 1), Addr("h2", 2)], read_write=True)
    assert "host=h1,h2" in info and "port=1,2" in info
    assert "target_session_attrs=read-write" in info


def _op(t: float, process: str, f: str, type_: str, node: str | None = None,
        value: object = None) -> str:
    op = {"time": int(t * 1e9), "process": process, "f": f, "type": type_, "value": value}
    if node:
        op["node"] = node
    return json.dumps(op)


def test_failover_times_from_history(tmp_path):
    from targets.postgres.matrix import failover_times

    lines = [
        _op(1.0, "monitor", "status", "ok", "n1", {"role": "leader", "term": 1}),
        _op(2.0, "nemesis", "kill", "ok", value={"node": "n1"}),
        _op(3.0, "monitor", "status", "ok", "n2", {"role": "follower", "term": 1}),
        _op(5.5, "monitor", "status", "ok", "n2", {"role": "leader", "term": 2}),
        _op(10.0, "nemesis", "start-partition", "ok",
            value={"partition": [["n2"], ["n1", "n3"]]}),
        _op(11.0, "monitor", "status", "ok", "n2", {"role": "leader", "term": 2}),
        _op(12.0, "monitor", "status", "ok", "n1", {"role": "leader", "term": 2}),  # same term
        _op(14.0, "monitor", "status", "ok", "n3", {"role": "leader", "term": 3}),
        _op(20.0, "nemesis", "pause", "ok", value={"node": "n3"}),   # never a new primary
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert failover_times(path) == pytest.approx([3.5, 4.0])


def test_first_write_times_count_only_writes_acknowledged_by_another_node(tmp_path):
    from targets.postgres.matrix import first_write_times

    lines = [
        _op(1.0, "nemesis", "kill", "ok", value={"node": "n1"}),
        _op(1.5, "3", "add", "ok", "n1", 7),          # the victim's late ack: not a failover
        _op(2.0, "4", "read-set", "ok", "n2", [7]),   # a read: not a write
        _op(3.0, "5", "add", "fail", "n2", 8),        # not acknowledged
        _op(4.0, "5", "add", "info", "n2", 9),        # not acknowledged either
        _op(6.5, "6", "add", "ok", "n2", 10),         # the new primary's first ack: 5.5 s
        _op(10.0, "nemesis", "start-partition", "ok",
            value={"partition": [["n2"], ["n1", "n3"]]}),
        _op(11.0, "7", "write", "ok", "n2", 1),       # the isolated primary still acks
        _op(13.0, "7", "cas", "ok", "n3", [1, 2]),    # n3 took over: 3.0 s
        _op(20.0, "nemesis", "pause", "ok", value={"node": "n3"}),   # nothing after it
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert first_write_times(path) == pytest.approx([5.5, 3.0])


def test_converged_needs_every_standby_streaming_on_the_primarys_timeline():
    from targets.postgres.setup import converged

    primary = {"state": "running", "role": "master", "timeline": 2, "xlog": {"location": 100},
               "replication": [{"application_name": "n2", "state": "streaming"},
                               {"application_name": "n3", "state": "streaming"}]}
    standby = {"state": "running", "role": "replica", "timeline": 2,
               "xlog": {"replayed_location": 100}}
    assert converged({"n1": primary, "n2": standby, "n3": standby}, ["n1", "n2", "n3"])
    # an old primary not yet rewound: further ahead (its own writes), not streaming
    old = {"state": "running", "role": "replica", "timeline": 1,
           "xlog": {"replayed_location": 500}}
    lone = dict(primary, replication=primary["replication"][:1])
    assert not converged({"n1": lone, "n2": standby, "n3": old}, ["n1", "n2", "n3"])
    behind = dict(standby, xlog={"replayed_location": 90})
    assert not converged({"n1": primary, "n2": standby, "n3": behind}, ["n1", "n2", "n3"])
    assert not converged({"n2": standby, "n3": standby}, ["n1", "n2", "n3"])  # no primary


def test_synchronous_mode_needs_a_standby():
    target = PostgresTarget()
    with pytest.raises(BadInput, match="synchronous_mode=strict: needs a standby"):
        target.check_cluster(target.validate_options({"synchronous_mode": "strict"}), ("n1",))
    target.check_cluster(target.validate_options({"synchronous_mode": "strict"}), ("n1", "n2"))
    target.check_cluster(target.validate_options({}), ("n1",))
