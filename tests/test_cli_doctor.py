"""`chaos doctor`: the host-binary table and its exit codes, through the real entry point under
click's CliRunner, with a file target declaring one binary that exists (sh) and one that
cannot. apt-get is never run here: `install` is either not reached (nothing missing), or
stopped at the root check, or its commands are replaced by a recorder."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chaos.cli import doctor as doctor_mod
from tests.runhelp import invoke_cli as invoke

TARGET = textwrap.dedent('''
    from chaos.target import BaseTarget

    class Fake(BaseTarget):
        name = "fake"
        workloads = ("register",)
        binaries = {BINARIES}

        def services(self, node):
            return []

        def client(self, endpoints, options):
            raise NotImplementedError

        def status(self, node, endpoints, timeout):
            return {"role": "follower", "term": None, "leader": None}
''')
MISSING = "chaos-doctor-test-no-such-binary"


def target_file(tmp_path: Path, binaries: dict[str, str]) -> str:
    path = tmp_path / "fake_target.py"
    path.write_text(TARGET.replace("{BINARIES}", repr(binaries)))
    return str(path)




@pytest.fixture(autouse=True)
def no_engine_probe(monkeypatch):
    """The docker line is tested by replacing the probe (no engine needed or reached)."""
    monkeypatch.setattr(doctor_mod, "docker_state", lambda: "engine down (test)")


@pytest.fixture
def no_apt(monkeypatch):
    """Fail the test if anything tries to run apt, dpkg or a service command."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"ran a command: {args}")
    monkeypatch.setattr(doctor_mod.subprocess, "run", refuse)


def test_all_present_is_exit_0_with_a_table(tmp_path, no_apt):
    code, out, err = invoke("doctor", target_file(tmp_path, {"sh": "dash"}))
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split() == ["TARGET", "BINARY", "ON", "THIS", "HOST", "PACKAGE"]
    assert row.split()[:2] == ["fake", "sh"] and row.split()[-1] == "dash"
    assert row.split()[2].endswith("/sh")
    assert "docker engine: not reachable (engine down (test))" in out
    assert "all binaries present" in out


def test_a_missing_binary_is_exit_3_naming_its_package(tmp_path, no_apt):
    code, out, err = invoke("doctor", target_file(tmp_path, {"sh": "dash", MISSING: "fakepkg"}))
    assert code == 3
    rows = {line.split()[1]: line.split() for line in out.splitlines()[1:3]}
    assert rows[MISSING][2:] == ["MISSING", "fakepkg"]
    assert rows["sh"][2] != "MISSING"
    assert err.strip().splitlines() == [
        "chaos: error: missing binaries; install them with `chaos doctor --install` "
        "(apt-get install fakepkg)"]


def test_install_with_nothing_missing_runs_nothing(tmp_path, no_apt, monkeypatch):
    monkeypatch.setattr(doctor_mod.os, "geteuid", lambda: 1000)  # not even root is needed
    code, out, err = invoke("doctor", "--install", target_file(tmp_path, {"sh": "dash"}))
    assert code == 0, err
    assert "nothing to install" in out


def test_install_without_root_is_exit_3_one_line(tmp_path, no_apt, monkeypatch):
    monkeypatch.setattr(doctor_mod.os, "geteuid", lambda: 1000)
    code, out, err = invoke("doctor", "--install", target_file(tmp_path, {MISSING: "fakepkg"}))
    assert code == 3
    assert err.strip().splitlines() == [
        "chaos: error: chaos doctor --install: apt-get needs root; run it as root, or: "
        "sudo apt-get install --no-install-recommends fakepkg"]


class FakeApt:
    """Stands in for subprocess.run: records argv, fails `apt-get install` on request."""

    def __init__(self, fail_install: bool):
        self.calls: list[list[str]] = []
        self.fail_install = fail_install

    def __call__(self, argv, **kwargs):
        import subprocess

        self.calls.append(list(argv))
        assert kwargs.get("env", {}).get("DEBIAN_FRONTEND") == "noninteractive" \
            or argv[0] in ("dpkg-query", "dpkg")
        if argv[:2] == ["apt-get", "install"] and self.fail_install:
            return subprocess.CompletedProcess(argv, 100, "", "E: Unable to locate package x\n")
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_failing_apt_is_exit_3_with_its_last_line(tmp_path, monkeypatch):
    apt = FakeApt(fail_install=True)
    monkeypatch.setattr(doctor_mod.subprocess, "run", apt)
    monkeypatch.setattr(doctor_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(doctor_mod, "POLICY_RC_D", tmp_path / "policy-rc.d")
    code, out, err = invoke("doctor", "--install", target_file(tmp_path, {MISSING: "fakepkg"}))
    assert code == 3
    assert err.strip().splitlines()[-1] == (
        "chaos: error: chaos doctor --install: apt-get install fakepkg failed (exit 100): "
        "E: Unable to locate package x")
    apt_calls = [c for c in apt.calls if c[0] == "apt-get"]
    assert apt_calls == [["apt-get", "update", "-q"],
                         ["apt-get", "install", "-y", "-q", "--no-install-recommends", "fakepkg"]]
    assert not (tmp_path / "policy-rc.d").exists()  # our service block is removed again


def test_install_blocks_service_starts_and_reports_what_is_still_missing(tmp_path, monkeypatch):
    apt = FakeApt(fail_install=False)
    policy = tmp_path / "policy-rc.d"
    seen_policy: list[str] = []

    def run(argv, **kwargs):
        if argv[:2] == ["apt-get", "install"]:
            seen_policy.append(policy.read_text())
        return apt(argv, **kwargs)

    monkeypatch.setattr(doctor_mod.subprocess, "run", run)
    monkeypatch.setattr(doctor_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(doctor_mod, "POLICY_RC_D", policy)
    code, out, err = invoke("doctor", "--install", target_file(tmp_path, {MISSING: "fakepkg"}))
    assert seen_policy and seen_policy[0].rstrip().endswith("exit 101")  # no service starts
    assert not policy.exists()
    assert code == 3  # the fake apt installed nothing: the binary is still missing
    assert err.strip().splitlines()[-1] == (
        f"chaos: error: still missing after apt-get install: {MISSING} (package fakepkg)")


def test_unknown_target_is_exit_4(no_apt):
    code, out, err = invoke("doctor", "no-such-target")
    assert code == 4
    assert "chaos doctor TARGET: unknown target 'no-such-target'" in err


def test_registered_targets_by_default(no_apt):
    code, out, err = invoke("doctor")
    rows = [line for line in out.splitlines()[1:] if not line.startswith(("docker", "all"))]
    targets = {line.split()[0] for line in rows}
    assert {"kvlite", "redis", "etcd", "postgres"} <= targets
    assert code in (0, 3)  # depends on this host's packages; the table is what is checked here
