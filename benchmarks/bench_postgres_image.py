"""Build time of the postgres node image from a cached chaos-base (issue 13).

    python benchmarks/bench_postgres_image.py [--target postgres] [--repeat 1]

Renders the same build context `chaos image build --target postgres` uses (chaos.images.node:
the target's Debian packages on top of chaos-base) and builds it WITHOUT the layer cache into
a throwaway tag, timed, then removes that tag. The cached chaos-base and the real node image
are left alone: `chaos image build --force` would also rebuild chaos-base (a new base id, so
every node image on the shared engine would be rebuilt on next use), and removing the node
image would pull it from under running tests.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.control.engine import docker_client  # noqa: E402
from chaos.images.base import ensure_base  # noqa: E402
from chaos.images.node import _build, _Spec, render, target_spec  # noqa: E402

TAG = "chaos-bench-image-timing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="postgres")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    client = docker_client()
    spec = _Spec(*target_spec(a.target))
    base = ensure_base(client)              # cached: no rebuild
    context = render(spec, base)
    tag = f"{TAG}:{spec.name}"
    times = []
    try:
        for i in range(a.repeat):
            t = time.monotonic()
            _build(client, tag, context, lambda line: None, nocache=True)
            times.append(time.monotonic() - t)
            print(f"build {i + 1}: {times[-1]:.1f} s ({' '.join(spec.packages)} on {base})",
                  flush=True)
    finally:
        try:
            client.images.remove(tag)
        except Exception as exc:  # noqa: BLE001 - report, the timing stands
            print(f"could not remove {tag}: {exc}")
    print(f"median {statistics.median(times):.1f} s over {len(times)} build(s)")


if __name__ == "__main__":
    main()
