"""The base image: Debian bookworm, pulled when a registry answers, else bootstrapped.

Our machines have no registry, so the usual `FROM debian:bookworm-slim` cannot be pulled.
We then build the root filesystem ourselves from the Debian mirror the host's apt already uses
(never a hard-coded host) and `docker import` it as `chaos-base:<hash>`. mmdebstrap is
preferred: apt resolves dependencies fast, it installs our common packages (python3, sshd,
iproute2, iptables, procps) in the same pass and writes the tar itself; debootstrap
(`--variant=minbase`) is the fallback, and the node Dockerfile then installs what is missing.
The work happens in /dev/shm when it has room: the build is disk-bound otherwise (measured
140 s on disk vs 56 s in RAM on a loaded 2-core machine). The hash covers the recipe (suite,
variant, mirror, packages, recipe version), so a second build finds the tag and does nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from chaos.errors import SetupError

SUITE = "bookworm"
VARIANT = "minbase"
#: bump when the way the rootfs is made changes (forces a rebuild everywhere)
RECIPE_VERSION = 2
#: what every node image needs (installed by mmdebstrap already, else by the node Dockerfile)
COMMON_PACKAGES = ("python3", "openssh-server", "iproute2", "iptables", "procps")
BASE_REPO = "chaos-base"
UPSTREAM = ("debian", "bookworm-slim")
LABEL = "chaos.image"

Progress = Callable[[str], None]


def _noop(_line: str) -> None:
    pass


def apt_mirror(sources_dir: str = "/etc/apt") -> str:
    """The Debian mirror the host's apt uses for the main archive (not security, not others).

    Reads both one-line (`deb URI suite comp`) and deb822 (`URIs:`/`Suites:`) sources; the
    first URI whose path ends in `/debian` wins. Raises SetupError when there is none.
    """
    files: list[Path] = []
    root = Path(sources_dir)
    if (root / "sources.list").is_file():
        files.append(root / "sources.list")
    if (root / "sources.list.d").is_dir():
        files.extend(sorted((root / "sources.list.d").glob("*.list")))
        files.extend(sorted((root / "sources.list.d").glob("*.sources")))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        uris = re.findall(r"^\s*URIs:\s*(.+)$", text, flags=re.MULTILINE)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.MULTILINE)
        for line in uris:
            for uri in line.split():
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    raise SetupError(
        f"no Debian mirror found in {sources_dir}/sources.list*: "
        "add a `deb http://<mirror>/debian bookworm main` line, or make debian:bookworm-slim "
        "available to Docker (docker load)"
    )


def base_tag(mirror: str) -> str:
    """`chaos-base:<hash>` for the debootstrap recipe with this mirror."""
    # The tool is not part of the hash: either way the node layer ends with the same packages.
    recipe = {"suite": SUITE, "variant": VARIANT, "mirror": mirror, "v": RECIPE_VERSION,
              "include": COMMON_PACKAGES}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"{BASE_REPO}:{digest}"


def _image_exists(client, ref: str) -> str | None:
    """The image id of `ref`, or None when the engine does not have it."""
    import docker.errors

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def _try_upstream(client, progress: Progress, pull: bool) -> str | None:
    """debian:bookworm-slim when present (or, with pull, pullable now: no waiting on a dead
    registry)."""
    import docker.errors

    ref = ":".join(UPSTREAM)
    if _image_exists(client, ref):
        progress(f"base: using local {ref}")
        return ref
    if not pull:
        return None
    try:
        progress(f"base: trying to pull {ref}")
        client.images.pull(UPSTREAM[0], tag=UPSTREAM[1])
        return ref
    except (docker.errors.APIError, OSError) as exc:
        reason = str(exc).splitlines()[0][-120:]
        progress(f"base: pull failed ({reason}); building with debootstrap")
        return None


def _which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    return f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None


def _ensure_bootstrapper(progress: Progress) -> str:
    """mmdebstrap (preferred: apt resolves, installs our packages, writes a tar) or debootstrap.

    When neither is installed and we are root with apt-get, installs mmdebstrap (falling back to
    debootstrap); otherwise SetupError naming what to install.
    """
    for tool in ("mmdebstrap", "debootstrap"):
        if _which(tool):
            return tool
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(
            "neither mmdebstrap nor debootstrap is installed and no registry is reachable: run "
            "`apt-get install -y mmdebstrap` as root (or `docker load` a debian:bookworm-slim)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    last = "?"
    for tool in ("mmdebstrap", "debootstrap"):
        progress(f"base: installing {tool} with apt-get")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", tool]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                last = ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1]
                break
        if _which(tool):
            return tool
    raise SetupError(f"could not install mmdebstrap or debootstrap ({last}): install one by hand")


def _run_streaming(cmd: list[str], progress: Progress, what: str,
                   env: dict[str, str] | None = None) -> None:
    """Run cmd, passing each output line to progress; SetupError with the last line on failure."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        env=env,
    )
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            last = line
            progress(f"{what}: {line}")
    if proc.wait() != 0:
        raise SetupError(f"{what} failed ({last[-200:]}); see the lines above")


def _remove_stale_scratch(parent: str, max_age: float = 3 * 3600) -> None:
    """Remove scratch dirs a killed build left (older than max_age: a build takes minutes)."""
    import time

    for entry in Path(parent).glob("chaos-rootfs-*"):
        try:
            if time.time() - entry.stat().st_mtime > max_age:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _scratch_dir() -> str:
    """A temp dir in RAM (/dev/shm) when it has room: unpacking ~300 MB of small files is
    I/O bound, and on a busy disk tmpfs makes the base build 2-3x faster."""
    for parent in ("/dev/shm", tempfile.gettempdir()):
        _remove_stale_scratch(parent)
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > 2 * 1024**3:
            return tempfile.mkdtemp(prefix="chaos-rootfs-", dir="/dev/shm")
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="chaos-rootfs-")


def _bootstrap_base(client, tag: str, mirror: str, progress: Progress) -> str:
    """Make the rootfs tar in a scratch dir, import it as `tag`; the scratch dir never survives."""
    if os.geteuid() != 0:
        raise SetupError(
            "building the base image needs root (mmdebstrap/debootstrap): run `chaos image "
            "build` once as root, or `docker load` a debian:bookworm-slim image"
        )
    tool = _ensure_bootstrapper(progress)
    work = _scratch_dir()
    tarball = os.path.join(work, "rootfs.tar")
    try:
        if tool == "mmdebstrap":
            _run_streaming(
                [_which(tool) or tool, f"--variant={VARIANT}", "--dpkgopt=force-unsafe-io",
                 f"--include={','.join(COMMON_PACKAGES)}", SUITE, tarball, mirror],
                progress, tool, env=dict(os.environ, TMPDIR=work),
            )
        else:
            root = os.path.join(work, "root")
            _run_streaming([_which(tool) or tool, f"--variant={VARIANT}", SUITE, root, mirror],
                           progress, tool)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in Path(root, junk).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            progress("base: packing the root filesystem")
            _run_streaming(["tar", "-C", root, "--numeric-owner", "-cf", tarball, "."],
                           progress, "tar")
        progress(f"base: importing as {tag}")
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(
            tarball, repository=repo, tag=version,
            changes=[f"LABEL {LABEL}=base", 'CMD ["/bin/bash"]'],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not _image_exists(client, tag):
        raise SetupError(f"docker import of {tag} did not produce an image; check `docker images`")
    return tag


def ensure_base(client, force: bool = False, progress: Progress = _noop) -> str:
    """The reference of a usable Debian bookworm base image, building it when needed.

    Order: a local debian:bookworm-slim; our cached chaos-base tag (unless force); a pull;
    debootstrap. The cache is checked before the pull so a cached build never touches the net.
    """
    upstream = _try_upstream(client, progress, pull=False)
    if upstream:
        return upstream
    try:
        mirror = apt_mirror()
    except SetupError:
        mirror = None  # not a Debian host: only a pull can help
    tag = base_tag(mirror) if mirror else None
    if tag and not force and _image_exists(client, tag):
        progress(f"base: {tag} (cached)")
        return tag
    upstream = _try_upstream(client, progress, pull=True)
    if upstream:
        return upstream
    if mirror is None or tag is None:
        apt_mirror()  # raises the SetupError that names the fix
        raise AssertionError("unreachable")
    return _bootstrap_base(client, tag, mirror, progress)
