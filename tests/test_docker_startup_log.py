"""A node that fails to start on docker is reported with the path of its *stored* output.

The container (and the data dir inside it) is removed at teardown; the message must name the
copy collected into the run directory (<store>/nodes/<node>/<service>.out), which then exists
and holds what the service printed. Real engine, real container.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from chaos.errors import SetupError

pytestmark = pytest.mark.docker


def test_startup_failure_names_the_stored_copy_of_the_output(tmp_path):
    from chaos.control.engine import docker_client
    from chaos.images import ensure_node_image
    from chaos.runtime.docker import DockerRuntime
    from chaos.target import Service

    rt = DockerRuntime(image=ensure_node_image(docker_client(), "kvlite"))
    store = tmp_path / "run"
    store.mkdir()
    rt.setup(["n1"], str(store))
    try:
        rt.node_ports("n1", {"main": 7000})
        bad = Service("main", ["sh", "-c", "echo boom-before-exit; exit 3"], ready_port="main",
                      ready_timeout=20)
        with pytest.raises(SetupError) as ei:
            rt.start("n1", bad)
        message = str(ei.value)
        rt.collect_logs("n1", str(store / "nodes" / "n1"))  # what chaos run does before teardown
    finally:
        rt.teardown()
    assert "/var/lib/chaos" not in message, message  # not the path inside the container
    named = re.search(r"(/\S+/main\.out)", message)
    assert named, message
    path = Path(named.group(1))
    assert path == store / "nodes" / "n1" / "main.out", message
    assert "boom-before-exit" in path.read_text()
