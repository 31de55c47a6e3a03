"""A node that dies at start-up is named as such; a node whose state cannot be read is not."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from chaos.control.remote import RemoteProcesses
from chaos.control.ssh import RemoteError, Result

TARGET = '''
from chaos.target import BaseTarget, Service

class Dies(BaseTarget):
    name = "dies"
    def services(self, node):
        return [Service("main", ["sh", "-c", "echo bye; exit 3"], ready_port=None)]
    def client(self, endpoints, options):
        raise AssertionError("never reached")
    def status(self, node, endpoints, timeout):
        raise ConnectionRefusedError("nobody listens")
'''


@pytest.mark.integration
def test_a_node_that_exits_at_start_up_is_a_setup_error_naming_it(tmp_path):
    f = tmp_path / "dies.py"
    f.write_text(textwrap.dedent(TARGET))
    proc = subprocess.run([sys.executable, "-m", "chaos", "run", "--target", str(f),
                           "--runtime", "local", "--nemesis", "none", "--time-limit", "5",
                           "--store", str(tmp_path / "store"), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "exited during start-up" in proc.stderr and "n1" in proc.stderr


class _Session:
    """Answers the state script with what it is given (a unit test of the parsing rule)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    def run(self, script, timeout=15.0, check=False):
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _procs(session):
    procs = RemoteProcesses({"n1": session})
    procs._pids[("n1", "main")] = 4242
    procs._order["n1"] = ["main"]
    return procs


def test_an_unanswered_state_query_is_not_read_as_gone():
    failing = _Session([Result(255, "", "fork: Resource temporarily unavailable")])
    with pytest.raises(RemoteError, match="cannot read its process states"):
        _procs(failing).is_running("n1")
    assert failing.calls == 3  # asked again before giving up


def test_a_short_answer_is_retried_and_a_full_one_believed():
    flaky = _Session([Result(0, "", ""), Result(0, "S\n", "")])
    assert _procs(flaky).is_running("n1") is True
    gone = _Session([Result(0, "-\n", "")])
    assert _procs(gone).is_running("n1") is False
