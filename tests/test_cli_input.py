"""Bad `chaos run` input is refused before anything starts: one line naming the option, exit 4.

Regression tests for the input defects of issue 9 (each reproduced on the old code first).
They call the real entry point (`chaos.cli.main`) in-process under click's CliRunner
isolation; `chaos.run.execute` is replaced by a sentinel, so an input that wrongly passes
validation shows up as "started" instead of running (or hanging in) a whole test.
"""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import chaos.run as runmod
from chaos.cli import main


class Started(BaseException):
    """Raised instead of running the test: the input got past every check."""


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """cli(*args) -> (exit code, stdout, stderr); the run itself never starts."""
    import chaos.schedule

    real_schedule = chaos.schedule.make_schedule

    def guarded_schedule(kinds, *, interval, time_limit, **kw):
        if kinds and time_limit / interval > 1e6:  # the old code would loop for ever here
            raise Started(f"make_schedule asked for {time_limit / interval:g} intervals")
        return real_schedule(kinds, interval=interval, time_limit=time_limit, **kw)

    def fake_execute(cfg, *a, **kw):
        raise Started("execute")

    # wherever the run code takes make_schedule from (chaos.run imports it by name)
    monkeypatch.setattr(chaos.schedule, "make_schedule", guarded_schedule)
    monkeypatch.setattr(runmod, "make_schedule", guarded_schedule, raising=False)
    monkeypatch.setattr(runmod, "execute", fake_execute)

    def invoke(*args: str) -> tuple[int | str, str, str]:
        runner = CliRunner()
        with runner.isolation() as (out, err, _):
            try:
                main(list(args))
                code: int | str = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Started as exc:
                code = f"started ({exc})"
        return code, out.getvalue().decode(), err.getvalue().decode()
    return invoke


def _store(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.mark.parametrize("args, message", [
    (["--time-limit", "inf"], "--time-limit must be a finite number"),
    (["--time-limit", "nan"], "--time-limit must be a finite number"),
    (["--time-limit", "1e9"], "--time-limit must be at most 604800"),
    (["--time-limit", "0"], "--time-limit must be positive"),
    (["--latency-ms", "-5"], "--latency-ms must be at least 0"),
    (["--latency-ms", "99999999"], "--latency-ms must be at most 3600000"),
    (["--nemesis-interval", "0"], "--nemesis-interval must be at least 0.1"),
    (["--nemesis-interval", "inf"], "--nemesis-interval must be a finite number"),
    (["--nemesis-interval", "-1"], "--nemesis-interval must be at least 0.1"),
    (["--rate", "-3"], "--rate must be positive"),
    (["--rate", "inf"], "--rate must be a finite number"),
    (["--rate", "nan"], "--rate must be a finite number"),
    (["--concurrency", "100000"], "--concurrency must be at most 1000"),
    (["--concurrency", "-1"], "--concurrency must be at least 1"),
    (["--quiesce", "-1"], "--quiesce must be at least 0"),
    (["--quiesce", "inf"], "--quiesce must be a finite number"),
    (["--op-timeout", "0"], "--op-timeout must be positive"),
    (["--op-timeout", "-2"], "--op-timeout must be positive"),
    (["--op-timeout", "nan"], "--op-timeout must be a finite number"),
    (["--nodes", "16"], "--nodes must be at most 15"),
    (["--nodes", "-1"], "--nodes must be at least 1"),
    (["--time-limit", "604800", "--nemesis-interval", "0.5"], "at most 100000"),
    (["--nodes", "1", "--nemesis", "partition"], "--nemesis partition needs at least 2 nodes"),
    (["--nodes", "1", "--nemesis", "latency"], "--nemesis latency needs at least 2 nodes"),
    (["--nodes", "1", "--nemesis", "all"], "needs at least 2 nodes"),
])
def test_out_of_range_numbers_are_rejected_before_anything_starts(cli, tmp_path, args, message):
    code, out, err = cli("run", "--store", _store(tmp_path), *args)
    assert code == 4, (code, out, err)
    assert message in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("args", [
    ["--time-limit", "604800", "--nemesis-interval", "5"],   # 7 days is allowed
    ["--latency-ms", "0"], ["--quiesce", "0"], ["--rate", "0"],  # rate 0 = unlimited
    ["--nodes", "1", "--nemesis", "kill,pause"],                  # no link needed
    ["--nodes", "15"], ["--concurrency", "1000"],
])
def test_values_at_the_bounds_pass_validation(cli, tmp_path, args):
    code, out, err = cli("run", "--store", _store(tmp_path), *args)
    assert code == "started (execute)", (code, out, err)


def test_every_problem_is_named_at_once(cli, tmp_path):
    code, _, err = cli("run", "--store", _store(tmp_path), "--latency-ms", "-5",
                       "--op-timeout", "0")
    assert code == 4
    assert "--latency-ms" in err and "--op-timeout" in err


def test_no_fault_warning_before_start(cli, tmp_path):
    """A run shorter than the first fault says so on stderr before it starts."""
    code, _, err = cli("run", "--store", _store(tmp_path), "--time-limit", "4",
                       "--nemesis-interval", "5", "--nemesis", "kill")
    assert code == "started (execute)"
    assert "warning: no faults will be injected" in err
    assert "--time-limit 10" in err
    code, _, err = cli("run", "--store", _store(tmp_path), "--time-limit", "10",
                       "--nemesis-interval", "5", "--nemesis", "kill")
    assert "no faults" not in err
    code, _, err = cli("run", "--store", _store(tmp_path), "--time-limit", "4",
                       "--nemesis", "none")
    assert "no faults" not in err  # none asked for: nothing to warn about


def test_bounds_table_matches_the_schedule():
    from chaos.bounds import expected_faults
    from chaos.schedule import make_schedule

    for limit, interval in [(30, 5), (10, 5), (9.99, 5), (6, 1), (7, 1), (1, 5), (100, 0.3)]:
        assert expected_faults(limit, interval) == len(
            make_schedule(["kill"], interval=interval, time_limit=limit, seed=1))


# -- --replay with a corrupt config.json ----------------------------------------------------

def _good_config(tmp_path) -> dict:
    cfg = runmod.RunConfig(nemesis=["kill"], time_limit=6, nemesis_interval=1, seed=3)
    return {"config": cfg.to_dict(), "target_ref": "kvlite"}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{\"config\": ", "not valid JSON"),
    (lambda d: "[1, 2]", "not a JSON object"),
    (lambda d: json.dumps({"target_ref": "kvlite"}), "no \"config\" object"),
    (lambda d: json.dumps({"config": [1]}), "no \"config\" object"),
    (lambda d: json.dumps({"config": {**d["config"], "nodes": "three"}}),
     "--nodes must be an integer"),
    (lambda d: json.dumps({"config": {**d["config"], "time_limit": None}}),
     "--time-limit must be a number"),
    (lambda d: json.dumps({"config": {k: v for k, v in d["config"].items() if k != "seed"}}),
     "missing seed"),
    (lambda d: json.dumps({"config": {**d["config"], "schedule": [{"kind": "kill"}]}}),
     "schedule"),
    (lambda d: json.dumps({"config": {**d["config"], "schedule": "soon"}}), "schedule"),
    (lambda d: json.dumps({"config": {**d["config"], "nemesis": "kill"}}), "--nemesis"),
    (lambda d: json.dumps({"config": {**d["config"], "latency_ms": -1}}), "--latency-ms"),
    (lambda d: b"\xff\xfe".decode("latin-1"), "config.json"),
    (lambda d: json.dumps({"config": {**d["config"], "target_options": {"replication": "fast"}}}),
     "-O replication=fast"),
    (lambda d: json.dumps({"config": {**d["config"], "target_options": {"colour": "blue"}}}),
     "-O colour"),
])
def test_corrupt_replay_config_is_one_line_exit_4(cli, tmp_path, mutate, message):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(mutate(_good_config(tmp_path)), encoding="latin-1")
    code, out, err = cli("run", "--store", _store(tmp_path), "--replay", str(run_dir))
    assert code == 4, (code, out, err)
    assert message in err and "config.json" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "store").exists()


def test_good_replay_config_passes(cli, tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(_good_config(tmp_path)))
    code, out, err = cli("run", "--store", _store(tmp_path), "--replay", str(run_dir))
    assert code == "started (execute)", (code, out, err)


# -- --store ---------------------------------------------------------------------------------

def test_store_that_is_a_file_is_bad_input(cli, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for store in (f, f / "below"):
        code, out, err = cli("run", "--store", str(store), "--time-limit", "1")
        assert code == 4, (code, out, err)
        assert f"--store {store}" in err and "not a directory" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f.read_text() == "x"


def test_store_check_does_not_create_anything(tmp_path):
    from chaos.store import check_store

    check_store(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory nobody may create entries in, root included: chattr +i (immutable), since
    root ignores mode bits. Skips where the file system or the container does not allow it."""
    import shutil
    import subprocess

    d = tmp_path / "ro"
    d.mkdir()
    if shutil.which("chattr") is None:
        pytest.skip("no chattr")
    res = subprocess.run(["chattr", "+i", str(d)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"chattr +i not allowed here: {res.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)


def test_unwritable_store_is_bad_input(cli, unwritable_dir):
    """Checked by really trying to create a file, so it holds for root and read-only mounts."""
    for store in (unwritable_dir, unwritable_dir / "sub" / "deeper"):
        code, out, err = cli("run", "--store", str(store), "--time-limit", "1")
        assert code == 4, (code, out, err)
        assert f"--store {store}: not writable" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(unwritable_dir.iterdir()) == []


def test_new_run_dir_failure_is_bad_input(tmp_path):
    from chaos.errors import BadInput
    from chaos.store import new_run_dir

    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(BadInput, match="--store"):
        new_run_dir(f, "t")


def test_math_is_finite_guard():
    from chaos.bounds import BOUNDS

    for name, b in BOUNDS.items():
        assert b.problem(math.inf) and b.problem(-math.inf) and b.problem(math.nan), name
        assert b.problem(True), name  # a JSON true is not a number


# -- help texts ------------------------------------------------------------------------------

def _help(cli, *args: str) -> str:
    code, out, err = cli(*args, "--help")
    assert code == 0, err
    return " ".join(out.split()).replace("- ", "-")  # undo click's wrapping (also at hyphens)


def test_checker_help_and_error_list_the_same_registry(cli, tmp_path):
    from chaos.checkers import CHECKERS

    text = _help(cli, "analyze")
    from tests.runhelp import REPO

    hist = tmp_path / "h.jsonl"
    hist.write_bytes((REPO / "histories" / "valid-register.jsonl").read_bytes())
    code, _, err = cli("analyze", "--no-results", "--checker", "nope", str(hist))
    assert code == 4
    for name in CHECKERS:
        assert name in text, (name, text)
        assert name in err, (name, err)


@pytest.mark.parametrize("command", [("run",), ("analyze",), ("report",), ("down",),
                                     ("proxy", "serve"), ("image", "build"), ("targets",)])
def test_every_option_has_help(command):
    from chaos.cli import cli as group

    cmd = group
    ctx = None
    import click

    for name in command:
        ctx = click.Context(cmd, info_name=name, parent=ctx)
        cmd = cmd.get_command(ctx, name)
    missing = [p.opts[0] for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"chaos {' '.join(command)}: options without help: {missing}"


def test_op_timeout_precedence_is_documented_in_both_helps(cli):
    run_help = _help(cli, "run")
    assert "--op-timeout" in run_help and "-O timeout" in run_help
    assert "shorter of the two" in run_help
    from chaos.plugins import load_target, resolve_ref

    target = load_target(resolve_ref("kvlite"))
    assert "--op-timeout" in target.options["timeout"].help


def test_a_client_timeout_longer_than_op_timeout_warns(cli, tmp_path):
    code, _, err = cli("run", "--store", _store(tmp_path), "-O", "timeout=5",
                       "--op-timeout", "1")
    assert code == "started (execute)"
    assert "warning: -O timeout=5 is longer than --op-timeout 1" in err
    code, _, err = cli("run", "--store", _store(tmp_path), "-O", "timeout=0.5")
    assert "longer than --op-timeout" not in err


def test_every_config_field_is_checked():
    """A new RunConfig field needs a type (and, if a number, a range) in chaos.bounds."""
    import dataclasses

    from chaos import bounds

    fields = {f.name for f in dataclasses.fields(runmod.RunConfig)}
    checked = set(bounds.BOUNDS) | set(bounds._SHAPES)
    assert checked <= fields, checked - fields
    assert fields - checked == {"schedule"}, fields - checked  # schedule: checked per entry


def test_bandwidth_needs_two_nodes_too(cli, tmp_path):
    code, _, err = cli("run", "--store", _store(tmp_path), "--nodes", "1", "--nemesis", "bandwidth")
    assert code == 4 and "bandwidth needs at least 2 nodes" in err, err


def test_ssh_nodes_file_with_one_host_and_a_partition_is_refused(cli, tmp_path):
    nodes = tmp_path / "nodes"
    nodes.write_text("10.0.0.1\n")
    key = tmp_path / "key"
    key.write_text("not a key")
    code, _, err = cli("run", "--store", _store(tmp_path), "--runtime", "ssh", "--net",
                       "iptables", "--nodes-file", str(nodes), "--ssh-key", str(key),
                       "--nemesis", "partition")
    assert code == 4 and "partition needs at least 2 nodes" in err, (code, err)


def test_nemesis_help_lists_the_fault_registry(cli):
    from chaos.faults import FAULTS

    text = _help(cli, "run")
    for kind in FAULTS:
        assert kind in text.split("--nemesis ")[1].split("--nemesis-interval")[0], kind
