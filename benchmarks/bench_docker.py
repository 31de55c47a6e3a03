"""Benchmark the docker runtime: image build (from nothing, then cached), 5-node up, teardown.

    python benchmarks/bench_docker.py [--from-nothing] [--nodes 5] [--repeat 3]

--from-nothing removes every chaos image first (labels chaos.image), so the build includes
debootstrap; without it the build figure is the cached (second) build. "Up" is the full
DockerRuntime.setup: network, containers running, sshd answering with our key, code uploaded,
data dirs ready. "Teardown" is DockerRuntime.teardown, checked through the Docker API to leave
no container or network behind.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.control.engine import docker_client  # noqa: E402
from chaos.images import ensure_node_image  # noqa: E402
from chaos.runtime.docker import DockerRuntime  # noqa: E402


def remove_images(client) -> int:
    removed = 0
    for image in client.images.list(filters={"label": "chaos.image"}):
        for ref in image.tags:
            client.images.remove(ref, force=True)
            removed += 1
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-nothing", action="store_true")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    client = docker_client()

    if args.from_nothing:
        print(f"removed {remove_images(client)} chaos image tag(s)")
        started = time.monotonic()
        tag = ensure_node_image(client, "kvlite")
        print(f"image build from nothing: {time.monotonic() - started:.1f} s ({tag})")
    started = time.monotonic()
    tag = ensure_node_image(client, "kvlite")
    print(f"image build, cached: {time.monotonic() - started:.2f} s")

    nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
    ups, downs = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as store:
            rt = DockerRuntime(image=tag)
            started = time.monotonic()
            try:
                rt.setup(nodes, store)
                ups.append(time.monotonic() - started)
                assert all(rt.run(n, "true").ok for n in nodes)
            finally:
                started = time.monotonic()
                rt.teardown()
                downs.append(time.monotonic() - started)
            label = {"label": f"chaos.test={rt.test_id}"}
            left = client.containers.list(all=True, filters=label) + client.networks.list(
                filters=label)
            assert not left, f"teardown left {left}"

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"

    print(f"{args.nodes}-node cluster up (x{args.repeat}): {fmt(ups)}")
    print(f"{args.nodes}-node teardown (x{args.repeat}): {fmt(downs)}")


if __name__ == "__main__":
    main()
