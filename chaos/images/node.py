"""Node images: the base plus python3, sshd and a target's packages, cached by content hash.

`chaos-node-<target>:<hash>` where the hash covers everything that goes into the image: the
rendered Dockerfile (which names the base), the entrypoint script, and the base image's id.
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
import tarfile
import tempfile
from collections.abc import Iterator
from importlib import resources

from chaos.errors import BadInput, SetupError
from chaos.images.base import COMMON_PACKAGES, LABEL, Progress, _image_exists, _noop, ensure_base

#: Debian packages each built-in target needs on top of the common ones (see node.Dockerfile)
TARGET_PACKAGES: dict[str, tuple[str, ...]] = {
    "kvlite": (),
    "redis": ("redis-server", "redis-sentinel"),
    "postgres": ("postgresql",),
}
NODE_REPO = "chaos-node-{target}"


def _files() -> dict[str, bytes]:
    root = resources.files("chaos.images") / "files"
    return {name: (root / name).read_bytes() for name in ("node.Dockerfile", "chaos-entrypoint")}


def render(target: str, base: str) -> dict[str, bytes]:
    """The build context for `target` on `base`: {"Dockerfile": ..., "chaos-entrypoint": ...}."""
    if target not in TARGET_PACKAGES:
        known = ", ".join(sorted(TARGET_PACKAGES))
        raise BadInput(f"no image recipe for target {target!r}; known: {known}")
    files = _files()
    text = files.pop("node.Dockerfile").decode()
    text = (
        text.replace("{base}", base)
        .replace("{common_packages}", " ".join(COMMON_PACKAGES))
        .replace("{target_packages}", " ".join(TARGET_PACKAGES[target]))
    )
    return {"Dockerfile": text.encode(), **files}


def node_tag(target: str, context: dict[str, bytes], base_id: str) -> str:
    """`chaos-node-<target>:<hash of the context and the base image id>`."""
    digest = hashlib.sha256(base_id.encode())
    for name in sorted(context):
        digest.update(name.encode() + b"\0" + context[name] + b"\0")
    return f"{NODE_REPO.format(target=target)}:{digest.hexdigest()[:12]}"


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
           labels: dict[str, str] | None = None) -> None:
    """docker build through the SDK, one progress line per build log line."""
    import docker.errors

    try:
        stream = client.api.build(
            fileobj=_tar(context), custom_context=True, tag=tag, rm=True, forcerm=True,
            decode=True, labels={LABEL: "node", **(labels or {})},
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
    client, target: str = "kvlite", force: bool = False, progress: Progress = _noop
) -> str:
    """The tag of the node image for `target`, building the base and the image when missing."""
    if target not in TARGET_PACKAGES:
        render(target, "x")  # raises BadInput naming the known targets
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


def _ensure_locked(client, target: str, force: bool, progress: Progress) -> str:
    base = ensure_base(client, force=force, progress=progress)
    base_id = _image_exists(client, base) or base
    context = render(target, base)
    tag = node_tag(target, context, base_id)
    if not force and _image_exists(client, tag):
        progress(f"node: {tag} (cached)")
        return tag
    progress(f"node: building {tag}")
    _build(client, tag, context, progress, labels={"chaos.target": target})
    return tag


def find_node_image(client, target: str = "kvlite") -> str | None:
    """The tag `ensure_node_image` would return, if it is already built (no building, no net)."""
    from chaos.images.base import UPSTREAM, apt_mirror, base_tag

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
