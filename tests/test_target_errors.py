"""A target's own bugs are named as the target's, in one line with the right exit code, and a
hook that fails after the workload ran does not lose the verdict (real local runs of small
NoopTarget variants through `python -m chaos run`)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

HEAD = '''
from chaos.errors import SetupError
from chaos.target import NoopTarget, OptionSpec

class T(NoopTarget):
    name = "oops"
    options = {"x": OptionSpec(1, "an option", type=int)}
'''
#: a target with real state (kvlite), for runs whose verdict matters
KV_HEAD = '''
from chaos.errors import SetupError
from targets.kvlite.plugin import KvliteTarget

class T(KvliteTarget):
    name = "oops"
'''


def _run(tmp_path: Path, body: str, *args: str, head: str = HEAD
         ) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "oops.py"
    f.write_text(head + textwrap.indent(textwrap.dedent(body), "    "))
    argv = [sys.executable, "-m", "chaos", "run", "--target", str(f), "--nemesis", "none",
            "--time-limit", "2", "--quiesce", "0.5", "--store", str(tmp_path / "store"), *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180)


def _one_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "please report" not in proc.stderr, proc.stderr
    assert expected in proc.stderr, proc.stderr


def _results(tmp_path: Path) -> dict:
    found = [p for p in (tmp_path / "store").glob("*/*/results.json") if p.parent.name != "latest"]
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def test_validate_options_raising_value_error_is_bad_input_naming_target(tmp_path):
    proc = _run(tmp_path, '''
        def validate_options(self, raw):
            raise ValueError("-O x: must be even")
        ''', "-O", "x=3")
    assert proc.returncode == 4, proc.stderr
    _one_line(proc, "target oops: validate_options raised ValueError: -O x: must be even")
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())


def test_check_cluster_raising_is_bad_input(tmp_path):
    proc = _run(tmp_path, '''
        def check_cluster(self, options, nodes):
            raise RuntimeError("needs 5 nodes")
        ''')
    assert proc.returncode == 4, proc.stderr
    _one_line(proc, "target oops: check_cluster raised RuntimeError: needs 5 nodes")


def test_services_typo_is_a_setup_error_naming_the_method(tmp_path):
    proc = _run(tmp_path, '''
        def services(self, node):
            node.port("helth")
        ''')
    assert proc.returncode == 3, proc.stderr
    _one_line(proc, "target oops: services raised KeyError: ")
    assert "'helth'" in proc.stderr


def test_setup_cluster_raising_is_a_setup_error_and_teardown_runs(tmp_path):
    mark = tmp_path / "torn"
    proc = _run(tmp_path, f'''
        def setup_cluster(self, cluster):
            raise RuntimeError("setup failed on purpose")
        def teardown_cluster(self, cluster):
            open({str(mark)!r}, "w").close()
        ''')
    assert proc.returncode == 3, proc.stderr
    _one_line(proc, "target oops: setup_cluster raised RuntimeError: setup failed on purpose")
    assert mark.exists()  # a half-done setup is torn down too


def test_setup_error_from_a_hook_names_the_hook(tmp_path):
    proc = _run(tmp_path, '''
        def setup_cluster(self, cluster):
            raise SetupError("no database")
        ''')
    assert proc.returncode == 3, proc.stderr
    _one_line(proc, "target oops: setup_cluster: no database")


@pytest.mark.parametrize("error", ["RuntimeError", "SetupError"])
def test_before_final_reads_raising_keeps_the_verdict_unknown_with_reason(tmp_path, error):
    proc = _run(tmp_path, f'''
        def before_final_reads(self, cluster, timeout):
            raise {error}("bfr failed on purpose")
        ''', "--workload", "set", "-O", "replication=sync", head=KV_HEAD)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    doc = _results(tmp_path)  # the checkers ran on the complete history
    assert doc["valid"] == "unknown"
    assert "before_final_reads raised" in doc["reasons"][0]
    assert "bfr failed on purpose" in doc["reasons"][0]
    assert doc["results"]["lost-writes"]["stats"]["acknowledged"] > 0
    first = [line for line in proc.stdout.splitlines() if ": UNKNOWN" in line][0]
    assert "before_final_reads raised" in first


def test_teardown_cluster_raising_makes_a_valid_run_unknown(tmp_path):
    proc = _run(tmp_path, '''
        def teardown_cluster(self, cluster):
            raise RuntimeError("teardown failed on purpose")
        ''', "--workload", "set", "-O", "replication=sync", head=KV_HEAD)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = _results(tmp_path)
    assert "teardown_cluster raised RuntimeError" in doc["reasons"][0]


def test_a_run_without_hook_failures_is_valid(tmp_path):
    """The other side: the same target with working hooks gives a valid verdict."""
    proc = _run(tmp_path, '''
        def before_final_reads(self, cluster, timeout):
            pass
        ''', "--workload", "set", "-O", "replication=sync", head=KV_HEAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _results(tmp_path)["valid"] is True


# -- client results that break the contract (chaos.workload.completion_of) -------------------

def test_completion_of_names_the_broken_rule():
    from chaos.workload import completion_of

    inv = {"process": 1, "f": "read-set", "key": "s", "value": None}
    ok = completion_of(inv, {"type": "ok", "value": [1, 2]}, None)
    assert ok["type"] == "ok" and ok["value"] == [1, 2]
    pyset = completion_of(inv, {"type": "ok", "value": {1, 2}}, None)
    assert pyset["type"] == "info" and pyset["value"] is None
    assert pyset["error"].startswith("indeterminate: client returned a non-JSON value")
    for bad in ({"type": "ok"}, {"type": "ok", "value": None}, {"type": "ok", "value": "1,2"}):
        done = completion_of(inv, bad, None)
        assert done["type"] == "info", bad
        assert "ok read-set" in done["error"], bad
    read = {"process": 1, "f": "read", "key": "k", "value": None}
    assert completion_of(read, {"type": "ok", "value": None}, None)["type"] == "ok"
    assert "ok read without a value" in completion_of(read, {"type": "ok"}, None)["error"]
    meta = completion_of({"process": 1, "f": "add", "key": "s", "value": 3},
                         {"type": "ok", "meta": {"term": {1}}}, None)
    assert meta["type"] == "info" and "meta" not in meta and "non-JSON meta" in meta["error"]
    # a fail without a value is fine (nothing was read)
    assert completion_of(inv, {"type": "fail"}, None)["type"] == "fail"


BAD_CLIENT = '''
def client(self, endpoints, options):
    class Client:
        def invoke(self, op):
            if op["f"] == "read-set":
                return {READ}
            return {{"type": "ok"}}
        def close(self):
            pass
    return Client()
'''


@pytest.mark.parametrize("read,reason", [
    ('{"type": "ok", "value": {1, 2}}', "client returned a non-JSON value"),
    ('{"type": "ok"}', "ok read-set without a value")])
def test_a_broken_read_set_result_is_unknown_not_a_crash_or_lost_writes(tmp_path, read, reason):
    proc = _run(tmp_path, BAD_CLIENT.format(READ=read), "--workload", "set")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = _results(tmp_path)
    assert doc["valid"] == "unknown"
    assert doc["results"]["lost-writes"]["stats"]["lost"] == 0
    history = next(p for p in (tmp_path / "store").glob("*/*/history.jsonl")
                   if p.parent.name != "latest").read_text()
    assert reason in history


# -- the start-up order: startup_timeout and setup_before_leader ----------------------------

ELECTED_BY_HOOK = '''
startup_timeout = {wait}
setup_before_leader = {before}

def status(self, node, endpoints, timeout):
    import os
    elected = os.path.exists({mark!r})
    return {{"role": "leader" if elected and node == "n1" else "follower", "term": 1,
            "leader": "n1" if elected else None}}

def setup_cluster(self, cluster):
    if {elect}:
        open({mark!r}, "w").close()

def teardown_cluster(self, cluster):
    open({mark!r} + ".torn", "w").close()
'''


def _elected(tmp_path: Path, *, wait: float, before: bool, elect: bool = True):
    mark = str(tmp_path / "elected")
    body = ELECTED_BY_HOOK.format(wait=wait, before=before, mark=mark, elect=elect)
    return _run(tmp_path, body, "--time-limit", "1"), Path(mark + ".torn")


def test_setup_before_leader_lets_a_hook_elect_the_first_leader(tmp_path):
    proc, torn = _elected(tmp_path, wait=10, before=True)
    assert proc.returncode != 3, proc.stderr  # the run went on to its verdict
    assert _results(tmp_path)["ops"] > 0
    assert torn.exists()


def test_without_setup_before_leader_the_same_target_times_out_after_startup_timeout(tmp_path):
    proc, torn = _elected(tmp_path, wait=2, before=False)
    assert proc.returncode == 3, proc.stderr
    _one_line(proc, "no leader within 2 s of start (the target's startup_timeout")
    assert not torn.exists()  # setup_cluster never ran, so neither does its teardown


def test_a_setup_before_leader_that_elects_nobody_is_torn_down(tmp_path):
    proc, torn = _elected(tmp_path, wait=1.5, before=True, elect=False)
    assert proc.returncode == 3, proc.stderr
    _one_line(proc, "no leader within 1.5 s of start")
    assert torn.exists()


def test_validate_checks_startup_timeout_and_setup_before_leader():
    from chaos import plugins
    from chaos.target import NoopTarget

    class Bad(NoopTarget):
        startup_timeout = 0
        setup_before_leader = "yes"

    problems = " ".join(plugins.validate(Bad()))
    assert "startup_timeout must be a number of seconds" in problems
    assert "setup_before_leader must be True or False" in problems
    assert plugins.validate(NoopTarget()) == []


def test_a_client_that_cannot_be_built_is_a_setup_error_naming_client(tmp_path):
    proc = _run(tmp_path, '''
        def client(self, endpoints, options):
            return endpoints["n9"]
        ''')
    assert proc.returncode == 3, proc.stderr
    _one_line(proc, "target oops: client raised KeyError: 'n9'")
