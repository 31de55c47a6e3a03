"""The base image: Debian bookworm, pulled when a registry answers, else debootstrapped.

Our machines have no registry, so the usual `FROM debian:bookworm-slim` cannot be pulled.
We then build the root filesystem ourselves with `debootstrap --variant=minbase` from the
Debian mirror the host's apt already uses (never a hard-coded host), tar it and
`docker import` it as `chaos-base:<hash>`. The hash covers the recipe (suite, variant,
mirror, recipe version), so a second build finds the tag and does nothing.
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
RECIPE_VERSION = 1
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
        uris = re.findall(r"^\s*URIs:\s*(.+)$", text, flags=re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
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
    recipe = {"suite": SUITE, "variant": VARIANT, "mirror": mirror, "v": RECIPE_VERSION}
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
    """debian:bookworm-slim when present (or, with pull, pullable now: no waiting on a dead registry)."""
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


def _ensure_debootstrap(progress: Progress) -> str:
    """The debootstrap path, installing it with apt-get when we are root and it is missing."""
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
    )
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(
            "debootstrap is not installed and no registry is reachable: run "
            "`apt-get install -y debootstrap` as root (or `docker load` a debian:bookworm-slim)"
        )
    progress("base: installing debootstrap with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "debootstrap"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise SetupError(f"`{' '.join(cmd)}` failed ({tail[0]}): install debootstrap by hand")
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def _run_streaming(cmd: list[str], progress: Progress, what: str) -> None:
    """Run cmd, passing each output line to progress; SetupError with the last line on failure."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
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


def _debootstrap_base(client, tag: str, mirror: str, progress: Progress) -> str:
    """Make the rootfs in a temp dir, tar it, import it as `tag`; the temp dir never survives."""
    if os.geteuid() != 0:
        raise SetupError(
            "building the base image needs root (debootstrap): run `chaos image build` once as "
            "root, or `docker load` a debian:bookworm-slim image"
        )
    tool = _ensure_debootstrap(progress)
    work = tempfile.mkdtemp(prefix="chaos-rootfs-")
    try:
        root = os.path.join(work, "root")
        _run_streaming(
            [tool, f"--variant={VARIANT}", SUITE, root, mirror], progress, "debootstrap"
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in Path(root, junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tarball = os.path.join(work, "rootfs.tar")
        progress("base: packing the root filesystem")
        _run_streaming(
            ["tar", "-C", root, "--numeric-owner", "-cf", tarball, "."], progress, "tar"
        )
        progress(f"base: importing as {tag}")
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(
            tarball, repository=repo, tag=version, changes=[f"LABEL {LABEL}=base", 'CMD ["/bin/bash"]']
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
    mirror = apt_mirror()
    tag = base_tag(mirror)
    if not force and _image_exists(client, tag):
        progress(f"base: {tag} (cached)")
        return tag
    upstream = _try_upstream(client, progress, pull=True)
    if upstream:
        return upstream
    return _debootstrap_base(client, tag, mirror, progress)
