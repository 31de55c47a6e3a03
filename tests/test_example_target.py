"""docs/targets.md's worked example (docs/examples/pairkv.py), a third-party file target with
two services per node, run for real: through `chaos run` on the local and docker runtimes
with kill, pause and partition, and service by service on the local runtime."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from chaos import plugins
from chaos.runtime.local import LocalRuntime
from chaos.target import MAIN, Addr, Endpoints, NodeConfig
from tests.runhelp import REPO, chaos

PAIRKV = REPO / "docs" / "examples" / "pairkv.py"
DOC = REPO / "docs" / "targets.md"


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def _run_dir(stderr_and_out: str) -> Path:
    found = re.findall(r"run directory: (\S+)", stderr_and_out)
    assert found, stderr_and_out[-3000:]
    return Path(found[-1])


def _nemesis(history: list[dict]) -> list[dict]:
    return [op for op in history if op.get("process") == "nemesis" and op["type"] != "invoke"]


def _starts(run_dir: Path, node: str, service: str) -> list[str]:
    """The 'restart=...' words each start of a service printed, in order."""
    text = (run_dir / "nodes" / node / f"{service}.out").read_text()
    return re.findall(r"pairkv \w+ \w+ start (restart=\w+)", text)


def _check_faulted_run(run_dir: Path) -> None:
    """Every fault was applied and verified; the killed node's two services were both
    restarted, told restart=True; the others were started once, told restart=False."""
    ops = _nemesis(_history(run_dir))
    kinds = {op["f"] for op in ops}
    assert {"kill", "restart", "pause", "resume", "start-partition", "stop-partition"} <= kinds
    for op in ops:
        assert op["type"] == "ok", op
        assert op["value"].get("verified") is True, op
    killed = {op["value"]["node"] for op in ops if op["f"] == "kill"}
    for node in ("n1", "n2", "n3"):
        for service in ("data", "agent"):
            expect = (["restart=False", "restart=True"] if node in killed
                      else ["restart=False"])
            assert _starts(run_dir, node, service) == expect, (node, service)


@pytest.mark.integration
def test_doc_example_runs_on_the_local_runtime_with_kill_pause_partition(tmp_path):
    proc = chaos("run", "--target", str(PAIRKV), "--workload", "set",
                 "--nemesis", "kill,pause,partition", "--nemesis-interval", "2",
                 "--time-limit", "13", "--seed", "11", "--net", "proxy", "--quiesce", "1",
                 "--store", str(tmp_path / "store"), timeout=300)
    assert proc.returncode in (0, 1, 2), proc.stderr[-3000:]   # a verdict, not a setup error
    _check_faulted_run(_run_dir(proc.stdout + proc.stderr))


@pytest.mark.integration
def test_doc_example_single_service_kill_through_a_replayed_schedule(tmp_path):
    """A kill fault naming one service restarts only that service."""
    first = chaos("run", "--target", str(PAIRKV), "--nemesis", "none", "--time-limit", "1",
                  "--seed", "3", "--store", str(tmp_path / "a"), timeout=200)
    assert first.returncode in (0, 1, 2), first.stderr[-3000:]
    run_dir = _run_dir(first.stdout + first.stderr)
    config = json.loads((run_dir / "config.json").read_text())
    config["config"].update(nemesis=["kill"], time_limit=5, schedule=[
        {"kind": "kill", "start_s": 1.0, "stop_s": 3.0,
         "params": {"node": "n2", "service": "agent"}}])
    (run_dir / "config.json").write_text(json.dumps(config))
    proc = chaos("run", "--replay", str(run_dir), "--store", str(tmp_path / "b"), timeout=200)
    assert proc.returncode in (0, 1, 2), proc.stderr[-3000:]
    replayed = _run_dir(proc.stdout + proc.stderr)
    ops = _nemesis(_history(replayed))
    assert [op["f"] for op in ops][:2] == ["kill", "restart"]
    assert all(op["value"].get("verified") is True for op in ops)
    assert _starts(replayed, "n2", "agent") == ["restart=False", "restart=True"]
    assert _starts(replayed, "n2", "data") == ["restart=False"]   # never killed


def _config(rt: LocalRuntime, target, restart: bool = False) -> NodeConfig:
    ports = rt.node_ports("n1", target.ports)
    return NodeConfig("n1", Addr(rt.listen_host("n1"), ports[MAIN]), {}, rt.data_dir("n1"),
                      target.validate_options({}), ports=ports, nodes=("n1",),
                      restart=restart, code_root=rt.code_root("n1"), python=rt.python("n1"))


@pytest.mark.integration
def test_two_services_kill_pause_and_restart_flag_on_the_local_runtime(tmp_path):
    target = plugins.load_target(plugins.resolve_ref(str(PAIRKV)))
    rt = LocalRuntime()
    rt.setup(["n1"], str(tmp_path))
    try:
        config = _config(rt, target)
        for service in target.services(config):
            rt.start("n1", service)            # each ready on its port before the next
        ends = Endpoints({"n1": {MAIN: Addr("127.0.0.1", config.port(MAIN)),
                                 "agent": Addr("127.0.0.1", config.port("agent"))}})
        client = target.client(ends, {"timeout": 2.0})
        assert client.invoke({"f": "add", "key": "s", "value": 1})["type"] == "ok"
        assert target.status("n1", ends, 1.0)["role"] == "leader"
        rt.kill("n1", "agent")                 # one service: the data server keeps serving
        assert rt.is_running("n1", "data") and not rt.is_running("n1", "agent")
        assert client.invoke({"f": "add", "key": "s", "value": 2})["type"] == "ok"
        with pytest.raises(OSError):
            target.status("n1", ends, 0.5)      # status goes through the agent
        rt.start("n1", target.services(_config(rt, target, restart=True))[1])
        rt.pause("n1")                         # the whole node: both services stop
        assert rt.is_paused("n1") and rt.is_paused("n1", "data") and rt.is_paused("n1", "agent")
        started = time.monotonic()
        reply = client.invoke({"f": "add", "key": "s", "value": 3})
        assert reply["type"] == "info" and time.monotonic() - started >= 1.5  # no answer
        rt.resume("n1")
        rt.kill("n1")
        assert not rt.is_running("n1", "data") and not rt.is_running("n1", "agent")
        for service in target.services(_config(rt, target, restart=True)):
            rt.start("n1", service)
        read = client.invoke({"f": "read-set", "key": "s", "node": "n1", "final": True})
        assert read["type"] == "ok" and {1, 2} <= set(read["value"])   # reloaded after a kill
        assert _starts(tmp_path, "n1", "data") == ["restart=False", "restart=True"]
    finally:
        rt.teardown()


@pytest.mark.docker
def test_doc_example_runs_on_the_docker_runtime_with_kill_pause_partition(tmp_path):
    proc = chaos("run", "--target", str(PAIRKV), "--runtime", "docker", "--workload", "set",
                 "--nemesis", "kill,pause,partition", "--nemesis-interval", "2",
                 "--time-limit", "13", "--seed", "11", "--quiesce", "1",
                 "--store", str(tmp_path / "store"), timeout=900)
    assert proc.returncode in (0, 1, 2), proc.stderr[-3000:]
    _check_faulted_run(_run_dir(proc.stdout + proc.stderr))


def _doc_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return next(b for b in blocks if marker in b)


def test_the_smallest_target_of_the_doc_loads_and_each_mistake_is_named(tmp_path):
    good = _doc_block("# my_target.py")
    f = tmp_path / "my_target.py"
    f.write_text(good)
    target = plugins.load_target(plugins.resolve_ref(str(f)))
    assert target.name == "mine" and plugins.validate(target) == []
    mistakes = {
        "missing method status(node, endpoints, timeout)":
            re.sub(r"    def status.*?(?=\n\S|\Z)", "", good, flags=re.DOTALL),
        "define services(node)": good.replace("def start_command", "def begin"),
        "no 'main' port": good.replace('name = "mine"', 'name = "mine"\n    ports = {"peer": 1}'),
        "unknown workload(s) queue": good.replace('name = "mine"',
                                                  'name = "mine"\n    workloads = {"queue"}'),
        "is a str, not a chaos.target.OptionSpec": good.replace(
            'name = "mine"', 'name = "mine"\n    options = {"x": "1"}'),
        "pip install 'nope-lib'": good.replace(
            'name = "mine"', 'name = "mine"\n    controller_modules = {"nope_lib": "nope-lib"}'),
        "default_runtime 'cloud'": good.replace(
            'name = "mine"', 'name = "mine"\n    default_runtime = "cloud"'),
        "cannot be called as client(endpoints, options)":
            good.replace("def client(self, endpoints: Endpoints, options)",
                         "def client(self, endpoints: Endpoints)"),
    }
    for expected, text in mistakes.items():
        bad = tmp_path / "bad.py"
        bad.write_text(text)
        assert text != good, expected
        with pytest.raises(plugins.BadInput, match=re.escape(expected)):
            plugins.load_target(str(bad))
