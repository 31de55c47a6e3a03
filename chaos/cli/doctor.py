"""`chaos doctor`: are the host programs that real targets need on the local runtime here?

A target declares `binaries` (executable -> Debian package, chaos.target). The local runtime
refuses to start when one is missing (LocalRuntime.check_binaries); `chaos doctor` shows the
whole picture at once, before anything runs: one row per target and binary (found at which
path, or missing, and the package that provides it), and whether a Docker engine answers
(the docker runtime and the docker tests need one; nothing else does). Without a TARGET it
also checks the programs the test suite needs (TEST_TOOLS: chromium for the `chaos serve`
browser tests), so `.ci/run`'s `chaos doctor --install` prepares a fresh machine for them.

`--install` installs the missing packages with apt-get (non-interactive, no recommends,
`apt-get update` once first). Services a package would start on its own (a system
redis-server, etcd or PostgreSQL cluster) would sit on the default ports that tests and users
expect free, so starting them is refused for the install (Debian's policy-rc.d) and every
service of a newly installed package is stopped afterwards. Nothing missing: nothing is run
(no root needed), so `chaos doctor --install` is a no-op on a host that is ready.

Exit 0 when every binary is present, 3 when some are missing (or apt-get failed, or
`--install` needs root), 4 for an unknown target.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from chaos import plugins
from chaos.errors import BadInput, SetupError
from chaos.runtime.local import present

#: Debian's hook that invoke-rc.d and deb-systemd-invoke ask before starting a service;
#: exit 101 = "action forbidden"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "l"}


@dataclass(frozen=True)
class BinaryCheck:
    """One declared executable of one target on this host."""

    target: str
    binary: str | None  # None: the target declares none (a row that says so)
    package: str
    path: str | None  # where it was found; None = missing

    @property
    def found(self) -> bool:
        return self.binary is None or self.path is not None


#: host programs the test suite needs beyond the targets' (checked and installed with them
#: when no target is named, as `.ci/run` does): the `chaos serve` browser tests drive
#: Debian's headless chromium through its chromedriver
TEST_TOOLS = {"chromium": "chromium", "chromedriver": "chromium-driver"}
TEST_TOOLS_LABEL = "(browser tests)"


def check_targets(names: Sequence[str]) -> tuple[list[BinaryCheck], list[str]]:
    """The binary checks of the named targets (all registered ones when `names` is empty),
    and one note per registered target that could not be loaded.

    A target named on the command line that cannot be loaded is bad input (BadInput, exit 4);
    when listing all of them, one broken plugin does not hide the others (as `chaos targets`).
    """
    if names:
        try:
            refs = [(name, plugins.resolve_ref(name)) for name in names]
        except BadInput as exc:  # its message names --target; here it is an argument
            raise BadInput(str(exc).replace("--target:", "chaos doctor TARGET:", 1)) from None
    else:
        refs = sorted(plugins.available_targets().items())
    checks: list[BinaryCheck] = []
    notes: list[str] = []
    for name, ref in refs:
        try:
            target = plugins.load_target(ref)
        except Exception as exc:
            if names:
                raise
            notes.append(f"{name}: cannot load ({exc})")
            continue
        label = getattr(target, "name", None) or name
        from chaos.faults import host_files_of

        # and the files of the optional faults it takes (clock: the libfaketime library)
        binaries = sorted({**(getattr(target, "binaries", None) or {}),
                           **host_files_of(sorted(getattr(target, "faults", ())))}.items())
        if not binaries:
            checks.append(BinaryCheck(label, None, "-", None))
        for binary, package in binaries:
            # the same test as LocalRuntime.check_binaries: on PATH, or an absolute path
            found = shutil.which(binary) or (binary if present(binary) else None)
            checks.append(BinaryCheck(label, binary, package, found))
    if not names:
        checks += [BinaryCheck(TEST_TOOLS_LABEL, binary, package, shutil.which(binary))
                   for binary, package in sorted(TEST_TOOLS.items())]
    return checks, notes


def docker_state() -> str | None:
    """None when a Docker engine answers, else why not (one line)."""
    from chaos.control.engine import docker_client

    try:
        docker_client(timeout=5).close()
    except SetupError as exc:
        return str(exc)
    return None


def missing_packages(checks: Iterable[BinaryCheck]) -> list[str]:
    """The Debian packages providing every missing binary, sorted, each once."""
    return sorted({c.package for c in checks if not c.found})


def _table(checks: Sequence[BinaryCheck]) -> list[str]:
    rows = [("TARGET", "BINARY", "ON THIS HOST", "PACKAGE")]
    rows += [(c.target, "-", "nothing needed", "-") if c.binary is None else
             (c.target, c.binary, c.path or "MISSING", c.package) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths)) + "  " + r[3]
            for r in rows]


def _run(argv: list[str], what: str, timeout: float = 1800) -> None:
    """Run one apt/dpkg/service command quietly; SetupError with its last output line."""
    try:
        proc = subprocess.run(argv, env={**os.environ, **APT_ENV}, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"chaos doctor --install: {what} failed: {exc}") from None
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        raise SetupError(f"chaos doctor --install: {what} failed (exit {proc.returncode}): "
                         f"{lines[-1]}")


def _installed() -> set[str]:
    """Names of the Debian packages installed now."""
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\n"],
                          capture_output=True, text=True)
    return {line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("ii")}


def _services(packages: Iterable[str]) -> list[str]:
    """The services (init scripts and systemd units) that the given packages ship."""
    found: set[str] = set()
    for package in packages:
        proc = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            path = Path(line)
            if path.parent == Path("/etc/init.d") and path.name not in ("README", "rc", "rcS"):
                found.add(path.name)
            elif path.parent.name == "system" and path.parent.parent.name == "systemd" \
                    and path.suffix == ".service" and "@" not in path.name:
                found.add(path.stem)
    return sorted(found)


def _stop(services: Iterable[str]) -> None:
    """Stop (and, under systemd, disable) services a package install may have started."""
    systemd = Path("/run/systemd/system").is_dir() and shutil.which("systemctl")
    for name in services:
        if systemd:
            argv = ["systemctl", "disable", "--now", f"{name}.service"]
        elif shutil.which("service"):
            argv = ["service", name, "stop"]
        else:
            argv = [f"/etc/init.d/{name}", "stop"]
        subprocess.run(argv, capture_output=True, env={**os.environ, **APT_ENV},
                       stdin=subprocess.DEVNULL, timeout=120)


def install(packages: Sequence[str]) -> list[str]:
    """apt-get install `packages` with no service started; returns the services stopped.

    SetupError (exit 3, one line) when not root, without apt-get, or when apt-get fails.
    """
    if os.geteuid() != 0:
        raise SetupError("chaos doctor --install: apt-get needs root; run it as root, or: "
                         f"sudo apt-get install --no-install-recommends {' '.join(packages)}")
    if shutil.which("apt-get") is None:
        raise SetupError("chaos doctor --install: no apt-get on this host; install "
                         f"{' '.join(packages)} with the system's package manager")
    click.echo(f"chaos doctor: apt-get install {' '.join(packages)}", err=True)
    before = _installed()
    _run(["apt-get", "update", "-q"], "apt-get update")
    own_policy = not POLICY_RC_D.exists()
    if own_policy:  # keep services from starting during the install
        POLICY_RC_D.write_text("#!/bin/sh\n# chaos doctor --install: no service starts\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
             f"apt-get install {' '.join(packages)}")
    finally:
        if own_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    services = _services(sorted(_installed() - before))
    _stop(services)
    return services


@click.command()
@click.argument("target_names", metavar="[TARGET]...", nargs=-1)
@click.option("--install", "do_install", is_flag=True,
              help="apt-get install the missing packages (needs root; no-op when none "
                   "is missing); services they would start are kept stopped.")
def doctor(target_names: tuple[str, ...], do_install: bool) -> None:
    """Check the host programs the targets need on the local runtime, and Docker.

    TARGET: a registered target or a path to a target file (default: every registered
    target). Exit 0 when every binary is present, 3 when some are missing or --install
    failed, 4 for an unknown target.
    """
    checks, notes = check_targets(target_names)
    for note in notes:
        click.echo(f"chaos doctor: warning: {note}", err=True)
    for line in _table(checks):
        click.echo(line)
    engine = docker_state()
    click.echo("docker engine: answers" if engine is None else
               f"docker engine: not reachable ({engine}); the docker runtime and the docker "
               "tests need one, nothing else does")
    missing = missing_packages(checks)
    if not missing:
        click.echo("all binaries present" + (": nothing to install" if do_install else ""))
        return
    if not do_install:
        raise SetupError(f"missing binaries; install them with `chaos doctor --install` "
                         f"(apt-get install {' '.join(missing)})")
    stopped = install(missing)
    if stopped:
        click.echo(f"chaos doctor: kept stopped: {', '.join(stopped)}", err=True)
    checks, _ = check_targets(target_names)
    still = [c for c in checks if not c.found and c.binary]
    if still:
        raise SetupError("still missing after apt-get install: " + ", ".join(
            f"{c.binary} (package {c.package})" for c in still))
    click.echo(f"installed {' '.join(missing)}: all binaries present")

