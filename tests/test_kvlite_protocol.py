"""kvlite bad input, wire protocol, client outcome mapping, the log file and the plugin."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest

from chaos.errors import BadInput
from chaos.target import Addr, Endpoints, NodeConfig, Target
from targets.kvlite.client import KvliteClient
from targets.kvlite.log import DurableLog
from targets.kvlite.plugin import KvliteTarget
from targets.kvlite.protocol import ProtocolError, decode, validate_request
from targets.kvlite.testing import Cluster, free_port


@pytest.fixture
def node(tmp_path):
    c = Cluster(tmp_path / "c", n=1, options={"failover": "none"})
    yield c
    c.close()


def raw_exchange(port: int, payload: bytes, replies: int) -> list[dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(payload)
        buf = b""
        while buf.count(b"\n") < replies:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {buf!r}"
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


@pytest.mark.parametrize("line, reason", [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"id": 5}', "missing field 'op'"),
    (b'{"id": 5, "op": "explode"}', "unknown op 'explode'"),
    (b'{"id": 5, "op": "write", "value": 1}', "needs a string or integer 'key'"),
    (b'{"id": 5, "op": "write", "key": "k"}', "needs a 'value'"),
    (b'{"id": 5, "op": "cas", "key": "k", "value": 3}', "[expected, new]"),
    (b'{"id": 5, "op": "add", "key": "k", "value": [1]}', "scalar"),
    (b'{"id": 5, "op": "append", "term": 1}', "bad request"),
    (b"\xff\xfe", "malformed JSON"),
])
def test_bad_requests_get_an_error_and_the_node_keeps_serving(node, line, reason):
    port = node.ports["n1"]
    got = raw_exchange(port, line + b'\n{"id": 9, "op": "write", "key": "k", "value": 1}\n', 2)
    bad, good = sorted(got, key=lambda r: r.get("id") == 9)
    assert bad["type"] == "error" and reason in bad["error"]
    assert good == {"id": 9, "type": "ok", "value": None, "node": "n1", "term": None}
    assert node.procs["n1"].poll() is None


def test_pipelined_requests_on_one_connection(node):
    port = node.ports["n1"]
    reqs = b"".join(json.dumps({"id": i, "op": "write", "key": "k", "value": i}).encode() + b"\n"
                    for i in range(200))
    got = raw_exchange(port, reqs + b'{"id": "r", "op": "read", "key": "k"}\n', 201)
    assert sorted(r["id"] for r in got if r["id"] != "r") == list(range(200))
    assert all(r["type"] == "ok" for r in got)


def test_protocol_validation_unit():
    with pytest.raises(ProtocolError):
        decode(b'"just a string"')
    assert validate_request({"op": "read", "key": 3}) == "read"
    with pytest.raises(ProtocolError):
        validate_request({"op": "read", "key": True})


def test_client_outcomes_timeout_is_info_and_refused_is_fail():
    # a listener that never answers: the request may have reached a node -> info
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cl = KvliteClient({"n1": ("127.0.0.1", silent.getsockname()[1])}, timeout=0.3)
        t0 = time.monotonic()
        done = cl.invoke({"f": "write", "key": "k", "value": 1})
        assert done["type"] == "info" and "indeterminate" in done["error"]
        assert time.monotonic() - t0 < 2
        cl.close()
    # nobody listening: the op surely did not happen -> fail
    cl = KvliteClient({"n1": ("127.0.0.1", free_port())}, timeout=0.3)
    assert cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "fail"
    assert cl.invoke({"f": "bogus", "key": "k"})["type"] == "fail"


def test_client_follows_the_leader_hint(tmp_path):
    with Cluster(tmp_path / "c", n=3, options={"failover": "none"}) as c:
        cl = c.client(prefer="n3")
        done = cl.invoke({"f": "write", "key": "k", "value": 1})
        assert done["type"] == "ok" and done["node"] == "n1" and cl.leader == "n1"
        assert cl.invoke({"f": "cas", "key": "k", "value": [2, 3]})["type"] == "fail"
        assert cl.invoke({"f": "cas", "key": "k", "value": [1, 3]})["type"] == "ok"
        assert cl.invoke({"f": "read", "key": "k"})["value"] == 3
        assert cl.invoke({"f": "read-set", "key": "nothing"})["value"] == []


# --- the durable log, without processes ---------------------------------------------------

def test_log_roundtrip_truncate_and_compact(tmp_path):
    async def scenario():
        lg = DurableLog(str(tmp_path), fsync=True)
        lg.open()
        for i in range(1, 21):
            lg.append({"i": i, "t": 1, "k": "k", "v": i})
        await lg.durable()
        assert lg.durable_index == 20
        dropped = lg.truncate_after(15)
        assert [e["i"] for e in dropped] == [16, 17, 18, 19, 20] and lg.durable_index == 15
        lg.append({"i": 16, "t": 2, "k": "k", "v": "x"})
        await lg.durable()
        lg.compact(10, 1, {"k": 10, "s": {1, 2}})
        lg.close()
        again = DurableLog(str(tmp_path), fsync=False)
        again.open()
        assert again.recovery is None
        assert again.snapshot_index == 10 and again.last_index == 16
        assert again.term_at(16) == 2 and again.term_at(10) == 1 and again.term_at(5) is None
        assert again.snapshot_state_dict() == {"k": 10, "s": {1, 2}}
        again.close()
    asyncio.run(scenario())


def test_log_index_gap_is_detected(tmp_path):
    async def scenario():
        lg = DurableLog(str(tmp_path), fsync=False)
        lg.open()
        lg.append({"i": 1, "t": 1, "k": "a", "v": 1})
        lg.append({"i": 3, "t": 1, "k": "a", "v": 3})     # a hole: never written by kvlite
        await lg.durable()
        lg.close()
    asyncio.run(scenario())
    lg = DurableLog(str(tmp_path), fsync=False)
    lg.open()
    assert lg.last_index == 1 and "index gap" in lg.recovery["problem"]
    lg.close()


# --- the plugin ---------------------------------------------------------------------------

def test_plugin_is_a_target_and_validates_options():
    t = KvliteTarget()
    assert isinstance(t, Target) and t.name == "kvlite" and t.supports_mesh
    assert t.workloads == {"register", "set"}
    opts = t.validate_options({"replication": "quorum", "heartbeat_ms": "20",
                               "replication_lag_ms": "0", "timeout": "0.5"})
    assert opts["replication"] == "quorum" and opts["heartbeat_ms"] == 20
    assert opts["replication_lag_ms"] == 0 and opts["timeout"] == 0.5
    assert opts["failover"] == "naive" and opts["read_from"] == "leader"
    for raw, msg in [({"replication": "paxos"}, "replication=paxos: must be one of"),
                     ({"colour": "red"}, "colour: unknown option for target kvlite"),
                     ({"heartbeat_ms": "fast"}, "heartbeat_ms=fast: expected an int"),
                     ({"election_timeout_ms": "-5"}, "must be >= 1"),
                     ({"timeout": "0"}, "timeout=0: must be > 0"),
                     ({"replication_lag_ms": "-1"}, "must be >= 0"),
                     ({"heartbeat_ms": "600"}, "at least twice heartbeat_ms")]:
        with pytest.raises(BadInput, match=msg.replace("[", r"\[")):
            t.validate_options(raw)


def test_plugin_start_command_runs_a_node_from_any_directory(tmp_path):
    t = KvliteTarget()
    port = free_port()
    cfg = NodeConfig("n1", Addr("127.0.0.1", port), {}, str(tmp_path / "n1"),
                     t.validate_options({"failover": "none"}))
    assert t.start_command(cfg)[0] == "python3"    # NodeConfig's default interpreter
    cfg.python = sys.executable                    # what the local runtime says
    (tmp_path / "n1").mkdir()
    argv = t.start_command(cfg)
    assert argv[0] == sys.executable
    assert KvliteTarget(python="py9").start_command(cfg)[0] == "py9"
    assert [s.name for s in t.services(cfg)] == ["main"]
    assert "--initial-leader" in argv and argv[argv.index("--initial-leader") + 1] == "n1"
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                st = t.status("n1", Endpoints.main_only({"n1": Addr("127.0.0.1", port)}), 0.5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert st["role"] == "leader" and st["term"] is None
        cl = t.client({"n1": Addr("127.0.0.1", port)}, {"timeout": 1.0})
        assert cl.invoke({"f": "add", "key": "s", "value": 1})["type"] == "ok"
        assert cl.invoke({"f": "read-set", "key": "s"})["value"] == [1]
        cl.close()
        assert (tmp_path / "n1" / "node.log").exists()
    finally:
        proc.kill()
        proc.wait(5)


def test_status_of_a_dead_node_raises(tmp_path):
    with pytest.raises(OSError):
        KvliteTarget().status("n1", Endpoints.main_only({"n1": Addr("127.0.0.1", free_port())}),
                              0.3)


def test_server_rejects_bad_arguments(tmp_path):
    r = subprocess.run([sys.executable, "-m", "targets.kvlite.server", "--name", "n1",
                        "--listen", "nowhere", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr


def test_client_spreads_reads_when_reading_from_any_node(tmp_path):
    with Cluster(tmp_path / "c", n=3, options={"failover": "none", "read_from": "any"}) as c:
        cl = c.client(read_from="any")
        assert cl.invoke({"f": "write", "key": "k", "value": 1})["type"] == "ok"
        nodes = {cl.invoke({"f": "read", "key": "k"})["node"] for _ in range(40)}
        assert len(nodes) >= 2
        assert cl.invoke({"f": "write", "key": "k", "value": 2})["node"] == "n1"


def test_a_read_naming_a_node_reads_that_nodes_own_state(tmp_path):
    with Cluster(tmp_path / "c", n=3, options={"failover": "none"}) as c:
        cl = c.client()
        assert cl.invoke({"f": "add", "key": "s", "value": 1})["type"] == "ok"
        c.wait_for(lambda: all(c.status(n)["commit_index"] == 1 for n in c.names), 5,
                   "replication to every node")
        for n in c.names:
            r = cl.invoke({"f": "read-set", "key": "s", "node": n, "final": True})
            assert r == {"type": "ok", "value": [1], "node": n, "meta": {"term": None}}
        c.kill("n2")
        assert cl.invoke({"f": "read-set", "key": "s", "node": "n2"})["type"] == "fail"
