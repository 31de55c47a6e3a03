"""The Docker engine connection, failing with one line that names the cause and the fix."""
from __future__ import annotations

import os
import re

from chaos.errors import SetupError


def docker_client(timeout: float = 60.0):
    """A docker.DockerClient that answered a ping; SetupError (exit 3) when none answers."""
    try:
        import docker
    except ImportError:
        raise SetupError("the Docker SDK is not installed: pip install docker") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no engine"
        text = str(exc) or type(exc).__name__
        errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
        reason = errno.group(0) if errno else text.splitlines()[0][:160]
        raise SetupError(
            f"Docker engine not reachable at {where} ({reason}): start dockerd, or set DOCKER_HOST"
        ) from None
    return client
