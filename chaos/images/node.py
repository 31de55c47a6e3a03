"""Node images: the base plus python3, sshd and a target's packages, cached by content hash.

The packages come from the target itself (`Target.packages`, Debian names), so any target
chaos can load gets its image: a registered name, "module:attr" or a path to a .py file.
`chaos-node-<target>:<hash>` where the hash covers everything that goes into the image: the
rendered Dockerfile (which names the base and lists the packages), the entrypoint script, and
the base image's id.
When the tag exists, `ensure_node_image` returns at once: a second build is instant.
Code (chaos/, targets/) is not baked in; runtimes upload it at setup, so editing Python never
needs a rebuild.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from importlib import resources
from typing import Any

from chaos.errors import BadInput, SetupError
from chaos.images.base import COMMON_PACKAGES, LABEL, Progress, _image_exists, _noop, ensure_base

NODE_REPO = "chaos-node-{target}"
#: a Debian package name (policy §5.6.1), so nothing else reaches the Dockerfile's shell
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def target_spec(target: Any) -> tuple[str, tuple[str, ...]]:
    """(name, Debian packages: the target's and its optional faults') of a target object,
    or of a reference chaos.plugins loads (a registered name, "module:attr", or a path to a
    .py file); BadInput when neither."""
    if isinstance(target, str):
        from chaos.plugins import load_target, resolve_ref

        target = load_target(resolve_ref(target))
    from chaos.faults import packages_of

    # and what the optional faults it takes need in every node (clock: libfaketime)
    packages = tuple(dict.fromkeys((*target.packages,
                                    *packages_of(sorted(getattr(target, "faults", ()))))))
    bad = [p for p in packages if not _PACKAGE.match(p)]
    if bad:
        raise BadInput(f"target {target.name}: {', '.join(map(repr, bad))} is not a Debian "
                       "package name")
    return target.name, packages


def _repo(name: str) -> str:
    """The image repository for a target name (Docker allows [a-z0-9._-] only)."""
    return NODE_REPO.format(target=re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
                            or "target")


def _files() -> dict[str, bytes]:
    root = resources.files("chaos.images") / "files"
    return {name: (root / name).read_bytes() for name in ("node.Dockerfile", "chaos-entrypoint")}


def render(target: Any, base: str) -> dict[str, bytes]:
    """The build context for `target` (object or reference) on `base`:
    {"Dockerfile": ..., "chaos-entrypoint": ...}."""
    _name, packages = target_spec(target)
    files = _files()
    text = files.pop("node.Dockerfile").decode()
    text = (
        text.replace("{base}", base)
        .replace("{common_packages}", " ".join(COMMON_PACKAGES))
        .replace("{target_packages}", " ".join(packages))
    )
    return {"Dockerfile": text.encode(), **files}


def node_tag(target: Any, context: dict[str, bytes], base_id: str) -> str:
    """`chaos-node-<target name>:<hash of the context and the base image id>`."""
    name = target if isinstance(target, str) else target.name
    digest = hashlib.sha256(base_id.encode())
    for fname in sorted(context):
        digest.update(fname.encode() + b"\0" + context[fname] + b"\0")
    return f"{_repo(name)}:{digest.hexdigest()[:12]}"


def _tar(context: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in context.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name == "chaos-entrypoint" else 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _build(client, tag: str, context: dict[str, bytes], progress: Progress,
           labels: dict[str, str] | None = None, nocache: bool = False) -> None:
    """docker build through the SDK, one progress line per build log line (`nocache`: no
    layer reuse, for timing a build from scratch on top of a cached base)."""
    import docker.errors

    try:
        stream = client.api.build(
            fileobj=_tar(context), custom_context=True, tag=tag, rm=True, forcerm=True,
            decode=True, labels={LABEL: "node", **(labels or {})}, nocache=nocache,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise SetupError(
                    f"image build of {tag} failed: {detail.strip()[-300:]} "
                    "(check that apt inside `docker build` reaches the Debian mirror)"
                )
            line = (chunk.get("stream") or chunk.get("status") or "").rstrip()
            if line:
                progress(f"build: {line}")
    except docker.errors.APIError as exc:
        raise SetupError(f"image build of {tag} failed: {exc.explanation or exc}") from None
    if not _image_exists(client, tag):
        raise SetupError(f"image build of {tag} finished without an image; see the log above")


def ensure_node_image(
    client, target: Any = "kvlite", force: bool = False, progress: Progress = _noop
) -> str:
    """The tag of the node image for `target` (object or reference), building the base and
    the image when missing."""
    name, packages = target_spec(target)  # BadInput before any build
    target = _Spec(name, packages)
    with _build_lock(progress):
        return _ensure_locked(client, target, force, progress)


@contextlib.contextmanager
def _build_lock(progress: Progress) -> Iterator[None]:
    """One image build at a time on this machine: a second caller (another test run, another
    `chaos run`) waits, then finds the tags the first one made instead of building again."""
    path = os.path.join(tempfile.gettempdir(), "chaos-image-build.lock")
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("waiting for another image build on this machine")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Spec:
    """A target reduced to what its image needs (loaded once per build)."""

    def __init__(self, name: str, packages: tuple[str, ...]):
        self.name, self.packages = name, packages


def _ensure_locked(client, target: _Spec, force: bool, progress: Progress) -> str:
    base = ensure_base(client, force=force, progress=progress)
    base_id = _image_exists(client, base) or base
    context = render(target, base)
    tag = node_tag(target, context, base_id)
    if not force and _image_exists(client, tag):
        progress(f"node: {tag} (cached)")
        return tag
    progress(f"node: building {tag}"
             + (f" with {' '.join(target.packages)}" if target.packages else ""))
    _build(client, tag, context, progress, labels={"chaos.target": target.name})
    return tag


def find_node_image(client, target: Any = "kvlite") -> str | None:
    """The tag `ensure_node_image` would return, if it is already built (no building, no net)."""
    from chaos.images.base import UPSTREAM, apt_mirror, base_tag

    target = _Spec(*target_spec(target))
    bases = [":".join(UPSTREAM)]
    try:
        bases.append(base_tag(apt_mirror()))
    except SetupError:
        pass  # not a Debian host: only the upstream image can be there
    for base in bases:
        base_id = _image_exists(client, base)
        if base_id:
            context = render(target, base)
            tag = node_tag(target, context, base_id)
            if _image_exists(client, tag):
                return tag
    return None
