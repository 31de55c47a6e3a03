"""`chaos targets [TARGET]` and the run header's net backend (in-process, CliRunner)."""
from __future__ import annotations

import textwrap

import pytest

import chaos.run as runmod
from tests.runhelp import invoke_cli as _invoke

FILE_TARGET = '''
from chaos.target import NoopTarget, OptionSpec

class Mine(NoopTarget):
    name = "mine"
    options = {"ack": OptionSpec("async", "when to ack", choices=("async", "all"))}
'''




def test_targets_lists_one_file_target_with_options_and_net_backends(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(textwrap.dedent(FILE_TARGET))
    code, out, err = _invoke("targets", str(f))
    assert code == 0, err
    assert out.startswith(f"mine  ({f})")
    assert "-O ack=async [async|all]  when to ack" in out
    assert "--net proxy (local" in out
    assert "kvlite" not in out  # only the one asked for


def test_targets_by_name_and_unknown_name(tmp_path):
    code, out, _ = _invoke("targets", "kvlite")
    assert code == 0 and out.startswith("kvlite  (") and "etcd  (" not in out
    code, out, err = _invoke("targets", "no-such-target")
    assert code == 4 and "unknown target 'no-such-target'" in err


def test_targets_without_argument_lists_every_target():
    code, out, _ = _invoke("targets")
    assert code == 0 and "kvlite  (" in out and "etcd  (" in out


class _Stop(Exception):
    pass


@pytest.mark.parametrize("net,expected", [("auto", "net proxy (--net auto)"),
                                          ("proxy", "net proxy)")])
def test_run_header_names_the_net_backend(tmp_path, monkeypatch, net, expected):
    def stop(*a, **k):
        raise SystemExit(9)

    monkeypatch.setattr(runmod, "execute", stop)
    code, _, err = _invoke("run", "--target", "kvlite", "--runtime", "local", "--nemesis",
                           "partition", "--net", net, "--time-limit", "10",
                           "--store", str(tmp_path / "store"))
    assert code == 9, err
    header = [line for line in err.splitlines() if line.startswith("chaos run:")]
    assert header and expected in header[0], err
