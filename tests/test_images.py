"""Node images: mirror discovery, content hashing, cached builds, build failures, engine errors."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from chaos.errors import BadInput, SetupError
from chaos.images.base import apt_mirror, base_tag
from chaos.images.node import node_tag, render, target_spec
from chaos.runtime.local import free_port
from tests.conftest import REPO


def test_apt_mirror_deb822(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n"
    )
    assert apt_mirror(str(tmp_path)) == "http://mirror.example/debian"


def test_apt_mirror_one_line(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb https://other.example/apt stable main\n"
        "deb [arch=amd64] http://ftp.example/debian bookworm main\n"
    )
    assert apt_mirror(str(tmp_path)) == "http://ftp.example/debian"


def test_apt_mirror_missing_names_the_fix(tmp_path):
    (tmp_path / "sources.list").write_text("deb https://other.example/apt stable main\n")
    with pytest.raises(SetupError, match="no Debian mirror"):
        apt_mirror(str(tmp_path))


class _Pkgs:
    """A target reduced to what images read (name, packages)."""

    def __init__(self, name: str, packages: tuple[str, ...] = ()):
        self.name, self.packages = name, packages


def test_tags_follow_content():
    assert base_tag("http://a/debian") != base_tag("http://b/debian")
    assert base_tag("http://a/debian") == base_tag("http://a/debian")
    kv = render("kvlite", "chaos-base:x")   # a registered name: its packages (none)
    redis = render(_Pkgs("redis", ("redis-server", "redis-sentinel")), "chaos-base:x")
    assert b"FROM chaos-base:x" in kv["Dockerfile"]
    assert b"redis-server redis-sentinel" in redis["Dockerfile"]
    assert b"redis-server" not in kv["Dockerfile"]
    tag = node_tag("kvlite", kv, "sha256:1")
    assert tag.startswith("chaos-node-kvlite:")
    assert tag == node_tag("kvlite", render("kvlite", "chaos-base:x"), "sha256:1")
    assert tag != node_tag("kvlite", kv, "sha256:2")  # a new base means a new image
    assert tag != node_tag("kvlite", render("kvlite", "chaos-base:y"), "sha256:1")
    # the packages are part of the hash: one more package, another image
    one = node_tag("t", render(_Pkgs("t", ("etcd-server",)), "b"), "sha256:1")
    two = node_tag("t", render(_Pkgs("t", ("etcd-server", "curl")), "b"), "sha256:1")
    assert one != two and node_tag(_Pkgs("My Target!"), kv, "s").startswith("chaos-node-my-target:")


def test_unknown_target_and_bad_packages_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="unknown target 'nope'; known: .*kvlite"):
        render("nope", "x")
    with pytest.raises(BadInput, match="'redis; rm -rf /' is not a Debian package name"):
        render(_Pkgs("t", ("redis; rm -rf /",)), "x")


def test_a_file_target_declares_its_own_packages(tmp_path):
    f = tmp_path / "third.py"
    f.write_text("from chaos.target import BaseTarget\n"
                 "class Third(BaseTarget):\n"
                 "    name = 'third'\n"
                 "    packages = ('socat',)\n"
                 "    def start_command(self, node): return ['socat', '-V']\n"
                 "    def client(self, endpoints, options): return None\n"
                 "    def status(self, node, endpoints, timeout): return {'role': 'leader'}\n")
    assert target_spec(str(f)) == ("third", ("socat",))
    assert b" socat" in render(str(f), "b")["Dockerfile"]
    proc = _chaos("image", "build", "--target", str(tmp_path / "missing.py"))
    assert proc.returncode == 4 and "no such file" in proc.stderr


def _chaos(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "chaos", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=timeout,
    )


@pytest.mark.parametrize("command", [["image", "build"], ["down"]])
def test_engine_not_reachable_is_exit_3_one_line(command):
    proc = _chaos(*command, env={"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"}, timeout=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Docker engine not reachable" in lines[0]
    assert "start dockerd" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.docker
def test_image_build_cli_then_cached_is_instant():
    proc = _chaos("image", "build", "--target", "kvlite")  # builds once on a fresh machine
    assert proc.returncode == 0, proc.stderr
    tag = proc.stdout.strip()
    assert tag.startswith("chaos-node-kvlite:")
    started = time.monotonic()
    again = _chaos("image", "build")
    assert again.returncode == 0 and again.stdout.strip() == tag
    assert "(cached)" in again.stderr
    assert time.monotonic() - started < 10


@pytest.mark.docker
def test_build_failure_is_setup_error_and_leaves_no_image():
    from chaos.control.engine import docker_client
    from chaos.images.node import _build

    client = docker_client()
    tag = "chaos-node-broken:test"
    context = {"Dockerfile": b"FROM scratch\nRUN /bin/false-does-not-exist\n"}
    with pytest.raises(SetupError, match="image build of chaos-node-broken:test failed"):
        _build(client, tag, context, progress=lambda _l: None)
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)


@pytest.mark.docker
@pytest.mark.slow
def test_image_build_from_nothing():
    """Remove the chaos images, build again from nothing (about 1.5-3 minutes)."""
    from chaos.control.engine import docker_client

    client = docker_client()
    for image in client.images.list(filters={"label": "chaos.image"}):
        for ref in image.tags:
            client.images.remove(ref, force=True)
    started = time.monotonic()
    proc = _chaos("image", "build", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "debootstrap" in proc.stderr or "bookworm-slim" in proc.stderr
    assert time.monotonic() - started < 300


@pytest.mark.docker
def test_image_build_of_a_third_party_file_target(tmp_path):
    """`chaos image build --target ./file.py` for a target chaos has never heard of."""
    f = tmp_path / "third_party.py"
    f.write_text("from chaos.target import BaseTarget\n"
                 "class ThirdParty(BaseTarget):\n"
                 "    name = 'third-party'\n"
                 "    def start_command(self, node): return ['sleep', '1000']\n"
                 "    def client(self, endpoints, options): return None\n"
                 "    def status(self, node, endpoints, timeout): return {'role': 'leader'}\n")
    proc = _chaos("image", "build", "--target", str(f))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("chaos-node-third-party:")
