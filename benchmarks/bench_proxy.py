"""Benchmark the embedded Toxiproxy server: added latency, bulk throughput, mesh setup time.

    python benchmarks/bench_proxy.py [--roundtrips 5000] [--megabytes 512] [--json]

The proxy server runs as a separate process (`python -m chaos.net.proxy`), as it does in
containers, so the benchmark's own threads do not share its GIL. Figures:

- round trip of a 64-byte message to an echo server, through one proxy vs direct: p50/p99
  of each and the added latency (proxy - direct) at p50/p99 (target: <= 200 µs at p50);
- bulk one-way throughput client -> proxy -> sink, vs direct (target: >= 200 MB/s);
- Mesh.setup() (one /populate call) and teardown time for 5 and 9 nodes (all directed links).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chaos.net.client import ProxyClient  # noqa: E402
from chaos.net.echo import EchoServer  # noqa: E402
from chaos.net.mesh import Mesh  # noqa: E402
from chaos.target import Addr  # noqa: E402


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "chaos.net.proxy", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/version", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("proxy server did not start")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def roundtrips(addr: Addr, n: int) -> list[float]:
    """Seconds per 64-byte request/response, after a warm-up."""
    msg = b"m" * 64
    out = []
    with socket.create_connection((addr.host, addr.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + 200):
            start = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < len(msg):
                got += len(s.recv(4096))
            if i >= 200:
                out.append(time.perf_counter() - start)
    return out


class Sink:
    """Counts bytes; acks with one byte when `expect` bytes have arrived on a connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = Addr("127.0.0.1", self.sock.getsockname()[1])

    def serve_one(self, expect: int) -> threading.Thread:
        def run() -> None:
            conn, _ = self.sock.accept()
            buf = bytearray(1 << 20)
            got = 0
            while got < expect:
                n = conn.recv_into(buf)
                if not n:
                    break
                got += n
            conn.sendall(b"k")
            conn.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def close(self) -> None:
        self.sock.close()


def throughput(sink: Sink, addr: Addr, megabytes: int) -> float:
    """MB/s (10^6 bytes) of a one-way bulk transfer to the sink via `addr`."""
    total = megabytes * 1_000_000
    block = b"\0" * (1 << 20)
    t = sink.serve_one(total)
    with socket.create_connection((addr.host, addr.port)) as s:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            s.sendall(piece)
            sent += len(piece)
        assert s.recv(1) == b"k"
        elapsed = time.perf_counter() - start
    t.join()
    return megabytes / elapsed


def mesh_setup(api: ProxyClient, nodes: int, repeat: int = 3) -> dict[str, float]:
    addrs = {f"n{i}": Addr("127.0.0.1", 1) for i in range(1, nodes + 1)}
    setups, teardowns = [], []
    for _ in range(repeat):
        mesh = Mesh(api, addrs)
        start = time.perf_counter()
        mesh.setup()
        setups.append(time.perf_counter() - start)
        start = time.perf_counter()
        mesh.teardown()
        teardowns.append(time.perf_counter() - start)
    return {"links": nodes * (nodes - 1) + nodes, "setup_ms": statistics.median(setups) * 1000,
            "teardown_ms": statistics.median(teardowns) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roundtrips", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    proc, url = start_server()
    api = ProxyClient(url)
    results: dict[str, object] = {}
    try:
        with EchoServer() as echo:
            p = api.create_proxy("echo", str(echo.addr))
            via = Addr("127.0.0.1", int(p["listen"].rsplit(":", 1)[1]))
            direct = roundtrips(echo.addr, args.roundtrips)
            proxied = roundtrips(via, args.roundtrips)
        us = 1e6
        results["roundtrip_us"] = {
            "direct_p50": pct(direct, 50) * us, "direct_p99": pct(direct, 99) * us,
            "proxy_p50": pct(proxied, 50) * us, "proxy_p99": pct(proxied, 99) * us,
            "added_p50": (pct(proxied, 50) - pct(direct, 50)) * us,
            "added_p99": (pct(proxied, 99) - pct(direct, 99)) * us,
            "n": args.roundtrips,
        }
        sink = Sink()
        try:
            p = api.create_proxy("bulk", str(sink.addr))
            via = Addr("127.0.0.1", int(p["listen"].rsplit(":", 1)[1]))
            results["throughput_MBps"] = {
                "direct": throughput(sink, sink.addr, args.megabytes),
                "proxy": throughput(sink, via, args.megabytes),
                "megabytes": args.megabytes,
            }
        finally:
            sink.close()
        api.delete_proxy("echo")
        api.delete_proxy("bulk")
        results["mesh"] = {str(n): mesh_setup(api, n) for n in (5, 9)}
    finally:
        proc.terminate()
        proc.wait(10)
    results["loadavg"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    rt = results["roundtrip_us"]
    print(f"round trip 64 B, n={rt['n']}: "
          f"direct p50 {rt['direct_p50']:.0f} µs p99 {rt['direct_p99']:.0f} µs; "
          f"proxy p50 {rt['proxy_p50']:.0f} µs p99 {rt['proxy_p99']:.0f} µs; "
          f"added p50 {rt['added_p50']:.0f} µs p99 {rt['added_p99']:.0f} µs")
    tp = results["throughput_MBps"]
    print(f"bulk {tp['megabytes']} MB: direct {tp['direct']:.0f} MB/s, "
          f"proxy {tp['proxy']:.0f} MB/s")
    for n, m in results["mesh"].items():
        print(f"mesh {n} nodes ({m['links']} proxies): setup {m['setup_ms']:.0f} ms, "
              f"teardown {m['teardown_ms']:.0f} ms")
    print(f"load average: {results['loadavg']}")


if __name__ == "__main__":
    main()
