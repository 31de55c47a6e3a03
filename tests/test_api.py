"""chaos.api (run, analyze, load_history, Result) and the pytest plugin (the `chaos` fixture).

The plugin is tested the way a user meets it: a tiny external project (a temp dir with one
test file) run by pytest in a subprocess (pytester), with the plugin loaded from the
`pytest11` entry point of the installed chaos; its runs are real kvlite clusters, short.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos import api
from chaos.history.model import History
from tests.runhelp import assert_results_schema

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
HISTORIES = REPO / "histories"


# --- without processes ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,needle", [
    ({"time_limit": 0}, "time_limit must be positive"),
    ({"time_limit": "20"}, "time_limit must be a number"),
    ({"nodes": 99}, "nodes must be at most 15"),
    ({"nemesis": "flood"}, "nemesis: unknown nemesis 'flood'"),
    ({"nemesis": 3}, "nemesis must be a string or a list"),
    ({"options": {"replication": "eventually"}}, "options replication=eventually"),
    ({"options": ["replication=async"]}, "options must be a mapping"),
    ({"workload": "queue"}, "workload"),
    ({"target": "nosuch"}, "nosuch"),
    ({"nemesis_interval": 0.01}, "nemesis_interval must be at least 0.1"),
])
def test_bad_arguments_raise_naming_the_argument_before_anything_starts(tmp_path, kwargs,
                                                                        needle):
    store = tmp_path / "store"
    with pytest.raises(api.BadInput) as exc:
        api.run(store=str(store), **kwargs)
    assert needle in str(exc.value)
    assert "--" not in str(exc.value).split(":")[0]  # the API's names, not the CLI's flags
    assert not store.exists()  # nothing started, nothing stored


def test_every_chaos_run_option_is_an_argument_of_api_run():
    """A flag added to `chaos run` must reach api.run too (named alike: --store is store)."""
    import inspect

    from chaos.cli.run import run as run_command

    flags = {p.name for p in run_command.params} - {"as_json", "quiet"}
    names = {{"store_dir": "store"}.get(n, n) for n in flags}
    assert names - set(inspect.signature(api.run).parameters) == set()


def test_nemesis_as_a_list_is_the_comma_list(tmp_path):
    with pytest.raises(api.BadInput, match="nemesis: unknown nemesis 'flood'"):
        api.run(store=str(tmp_path), nemesis=["kill", "flood"])


def test_analyze_and_load_history():
    h = api.load_history(HISTORIES / "lost-write-after-failover.jsonl")
    assert isinstance(h, History) and len(h.pairs) == 22
    r = api.analyze(HISTORIES / "lost-write-after-failover.jsonl", results=False)
    assert (r.valid, r.verdict, int(r.exit_code)) == (False, "invalid", 1)
    (lost,) = r.anomalies
    assert lost.kind == "lost-write" and "element 3" in lost.message and lost.ops
    assert r.checkers["lost-writes"].verdict == "invalid" and r.checkers["dual-leaders"].valid
    text = r.summary()
    assert text.splitlines()[0].endswith("INVALID  (format jsonl, 22 ops, 3 checkers)")
    assert "element 3 was acknowledged by n1" in text and "@n1" in text  # the ops, shown


def test_unknown_is_not_valid():
    r = api.analyze(HISTORIES / "all-info-register.jsonl", results=False)
    assert r.verdict == "unknown" and r.valid is False and int(r.exit_code) == 2
    assert r.reasons and "came back ok" in r.reasons[0]
    assert "UNKNOWN" in r.summary().splitlines()[0]


def test_analyze_bad_input_names_file_and_line():
    with pytest.raises(api.BadInput, match=r"malformed-line.jsonl:3"):
        api.analyze(HISTORIES / "bad" / "malformed-line.jsonl", results=False)
    with pytest.raises(api.BadInput, match="checker: unknown 'nope'"):
        api.analyze(HISTORIES / "valid-set.jsonl", checker="nope")
    with pytest.raises(api.BadInput, match="format must be one of"):
        api.load_history(HISTORIES / "valid-set.jsonl", format="csv")


def test_analyze_writes_junit(tmp_path):
    r = api.analyze(HISTORIES / "valid-set.jsonl", results=False, junit=tmp_path / "j.xml")
    assert r.valid
    suite = ET.parse(tmp_path / "j.xml").getroot()[0]
    assert suite.get("name") == "valid-set.jsonl" and suite.get("failures") == "0"


@pytest.mark.integration
def test_plugin_is_inert_unless_used(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--chaos-seed", "3")
    result.assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("chaos-store")) and not (pytester.path / "store").exists()
    result = pytester.runpytest_subprocess("--chaos-seed", "three")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--chaos-seed*invalid*int*"])


# --- real runs -----------------------------------------------------------------------------

PROJECT_TEST = '''
SHORT = dict(time_limit=5, nemesis_interval=1.5, quiesce=1)


def test_safe_config(chaos):
    r = chaos.run(target="kvlite", nemesis="partition",
                  options={"replication": "quorum", "failover": "majority"}, **SHORT)
    assert r.valid, r.summary()


def test_unsafe_config(chaos):
    r = chaos.run(target="kvlite", workload="set", nemesis="partition",
                  options={"replication": "async", "failover": "naive",
                           "election_timeout_ms": 400, "heartbeat_ms": 50}, **SHORT)
    assert r.valid, r.summary()
'''


@pytest.mark.integration
def test_external_project_passes_safe_and_fails_unsafe_with_the_run_directory(pytester):
    pytester.makepyfile(test_failover=PROJECT_TEST)
    store = pytester.path / "chaos-runs"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--chaos-store", str(store), "--chaos-seed", "7",
        "--junitxml", "out.xml", timeout=280)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # the failure: a readable verdict naming the lost element, and where the run is
    result.stdout.fnmatch_lines([
        "*AssertionError: *kvlite-set-partition/*: INVALID*",
        "*lost-writes*INVALID*anomal*",
        "*element * was acknowledged by n* but is absent from all * final read(s)*",
        f"*run directory: {store}/kvlite-set-partition/*(seed 7;*",
        "*- chaos runs -*",
        f"invalid: {store}/kvlite-set-partition/*(seed 7)",
    ])
    assert "test_safe_config" not in out.split("short test summary info")[-1]
    (unsafe_dir,) = (store / "kvlite-set-partition").glob("2*")
    (safe_dir,) = (store / "kvlite-register-partition").glob("2*")
    for d in (unsafe_dir, safe_dir):
        assert (d / "history.jsonl").exists()
        assert_results_schema(json.loads((d / "results.json").read_text()))
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "out.xml").iter("testcase")}
    props = {c: {p.get("name"): p.get("value") for p in case.iter("property")}
             for c, case in cases.items()}
    assert props["test_unsafe_config"]["chaos_run_dir"] == str(unsafe_dir)
    assert props["test_safe_config"]["chaos_run_dir"] == str(safe_dir)


def _descendants(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc's children lists)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += sorted(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


INTERRUPTED = '''
import sys
from chaos import api

if __name__ == "__main__":
    api.run(target="kvlite", time_limit=60, nemesis_interval=2, store=sys.argv[1],
            junit=sys.argv[2])
'''


@pytest.mark.integration
def test_ctrl_c_cleans_up_writes_junit_and_stops_the_caller(tmp_path):
    """Ctrl-C during api.run: faults healed, nodes stopped, the JUnit error written, then
    KeyboardInterrupt reaches the caller (a script or a pytest session stops)."""
    import signal
    import subprocess
    import sys

    from tests.conftest import wait_for

    script = tmp_path / "script.py"
    script.write_text(INTERRUPTED)
    store, junit = tmp_path / "store", tmp_path / "j.xml"
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(junit)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(p.stat().st_size > 2000 for p in store.glob("*/2*/history.jsonl")),
                 120, "the run's history to grow")
        started = _descendants(proc.pid)  # nodes, workers, the proxy's
        assert started
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt: chaos run interrupted" in err, err
    # a child SIGKILLed by the cleanup can take a moment to die on a loaded host: poll
    try:
        wait_for(lambda: not [p for p in started if _alive(p)], 10, "the run's processes to end")
    except AssertionError:
        left = [(pid, Path(f"/proc/{pid}/cmdline").read_bytes()[:200]) for pid in started
                if _alive(pid)]
        raise AssertionError(f"processes left running 10 s after the caller stopped: {left}")
    err_case = ET.parse(junit).getroot().find("testsuite/testcase[@name='run']/error")
    assert err_case is not None and "interrupted" in err_case.get("message")
