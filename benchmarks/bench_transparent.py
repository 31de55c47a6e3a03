"""Benchmark the transparent fault mesh on docker: latency it adds to node-to-node traffic.

    python benchmarks/bench_transparent.py [--roundtrips 2000] [--json]

Three containers (NET_ADMIN) and the proxy container; node n2 runs echo servers on a port the
mesh covers (7000: n1's connections to it are DNATed into the proxy for n1->n2) and on one it
does not (7002: direct). Inside n1, one persistent connection per port sends 64-byte messages
and waits for each echo: p50/p99 round trip of each, the added latency (mesh - direct), and
the connect time of each path (connect + first echo, 50 fresh connections).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chaos.control.engine import docker_client  # noqa: E402 - after the sys.path line
from chaos.images import ensure_node_image  # noqa: E402 - after the sys.path line
from chaos.net.client import ProxyClient  # noqa: E402 - after the sys.path line
from chaos.net.transparent import TransparentMesh  # noqa: E402 - after the sys.path line
from chaos.runtime.docker import DockerRuntime  # noqa: E402 - after the sys.path line
from chaos.target import Addr, Endpoints  # noqa: E402 - after the sys.path line

LOOP = textwrap.dedent("""
    import json, socket, statistics, sys, time
    host, n = sys.argv[1], int(sys.argv[2])
    out = {}
    for port in (7000, 7002):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg, rtts = b"x" * 64, []
        for _ in range(n):
            t = time.perf_counter(); s.sendall(msg); got = 0
            while got < 64: got += len(s.recv(64 - got))
            rtts.append((time.perf_counter() - t) * 1e6)
        s.close()
        conns = []
        for _ in range(50):
            t = time.perf_counter()
            with socket.create_connection((host, port)) as c:
                c.sendall(b"y"); c.recv(1)
            conns.append((time.perf_counter() - t) * 1e6)
        rtts.sort(); conns.sort()
        out[port] = {"p50": rtts[len(rtts) // 2], "p99": rtts[int(len(rtts) * 0.99)],
                     "connect_p50": conns[25]}
    print(json.dumps(out))
""")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--roundtrips", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rt = DockerRuntime(net_admin=True, image=ensure_node_image(docker_client(), "kvlite"))
    rt.setup(["n1", "n2", "n3"], tempfile.mkdtemp(prefix="bench-transparent-"))
    try:
        for port in (7000, 7002):
            rt.run("n2", f"cd /opt/chaos && setsid nohup python3 -m chaos.net.echo --port {port} "
                         ">/dev/null 2>&1 </dev/null &")
        rt.run("n1", "cat > /tmp/loop.py <<'EOF'\n" + LOOP + "EOF\n")
        place = rt.proxy_server()
        real = Endpoints({n: {"main": Addr(rt.host(n), 7000)} for n in ("n1", "n2", "n3")})
        mesh = TransparentMesh(ProxyClient(place.url), real, rt.run,
                               listen_host=place.listen_host, advertise_host=place.advertise_host,
                               tag=rt.test_id)
        mesh.setup()
        res = rt.run("n1", f"python3 /tmp/loop.py {rt.host('n2')} {args.roundtrips}", timeout=600)
        figures = json.loads(res.out.strip().splitlines()[-1])
        mesh.teardown()
    finally:
        rt.teardown()
    mesh_f, direct = figures["7000"], figures["7002"]
    result = {"roundtrips": args.roundtrips, "mesh": mesh_f, "direct": direct,
              "added_p50_us": mesh_f["p50"] - direct["p50"],
              "added_p99_us": mesh_f["p99"] - direct["p99"],
              "added_connect_p50_us": mesh_f["connect_p50"] - direct["connect_p50"],
              "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"round trip 64 B in n1 -> n2, n={args.roundtrips}: direct p50 {direct['p50']:.0f} µs "
          f"p99 {direct['p99']:.0f} µs; transparent mesh p50 {mesh_f['p50']:.0f} µs p99 "
          f"{mesh_f['p99']:.0f} µs; added p50 {result['added_p50_us']:.0f} µs "
          f"p99 {result['added_p99_us']:.0f} µs")
    print(f"fresh connection + first echo p50: direct {direct['connect_p50']:.0f} µs, mesh "
          f"{mesh_f['connect_p50']:.0f} µs (added {result['added_connect_p50_us']:.0f} µs)")
    print(f"load average: {result['load_average']}")


if __name__ == "__main__":
    main()
