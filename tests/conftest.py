"""Shared test configuration: markers and the Docker-engine gate.

Tests marked `docker` run whenever a Docker engine answers (as in CI) and are skipped, with
the reason, when none does. `slow` tests are excluded by default (pyproject addopts).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HISTORIES = REPO / "histories"
SHARED = REPO.parent / "shared"


@functools.cache
def docker_available() -> str | None:
    """None when a Docker engine answers, else the reason it does not."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"no Docker engine: {exc}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "docker" in item.keywords:
            reason = docker_available()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def kvlite_cluster(tmp_path):
    """A factory of real kvlite clusters (processes on free ports); all closed at the end."""
    from targets.kvlite.testing import Cluster

    made: list[Cluster] = []

    def make(**kw):
        c = Cluster(tmp_path / f"c{len(made)}", **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def server():
    """The embedded Toxiproxy-compatible server on a free port, one per test module (the proxy
    and mesh suites); a module that needs another server (seeded, say) defines its own."""
    from chaos.net.proxy import ServerThread

    srv = ServerThread(port=0).start()
    yield srv
    srv.stop()
