"""Benchmark the embedded proxy server's accept path: new connections per second, and what it
logs when it runs out of file descriptors.

    python benchmarks/bench_proxy_accept.py [--connections 3000] [--threads 4]
        [--exhaust-seconds 10] [--code-root DIR] [--json]

The server runs as its own process (`python -m chaos.net.proxy`) from `--code-root` (default:
this checkout; pass an older checkout to compare). Figures:

- connections/s through one proxy to an echo server: each connection connects, sends 1 byte,
  reads the echo and closes (sequentially, then from `--threads` threads);
- under a 48-descriptor limit with 120 clients connected: stderr lines logged and server CPU
  seconds over `--exhaust-seconds`, and the time to answer again once the clients close.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_SERVE = """
import resource, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
from chaos.net.proxy.__main__ import main
sys.exit(main(["--port", "0"]))
"""


def start_server(code_root: Path, fd_limit: int = 0, stderr=None) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(fd_limit)], cwd=code_root,
                            env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split()[-1]


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def echo_server() -> tuple[socket.socket, int]:
    srv = socket.create_server(("127.0.0.1", 0), backlog=512)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def connection_rate(url: str, upstream_port: int, n: int, threads: int) -> dict[str, float]:
    body = json.dumps({"name": "bench", "listen": "127.0.0.1:0",
                       "upstream": f"127.0.0.1:{upstream_port}"}).encode()
    req = urllib.request.Request(url + "/proxies", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        listen = json.loads(r.read())["listen"]
    host, port = listen.rsplit(":", 1)

    def one() -> None:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"x")
            assert s.recv(1) == b"x"

    out = {}
    t = time.perf_counter()
    for _ in range(n):
        one()
    out["sequential_per_s"] = round(n / (time.perf_counter() - t))

    def worker(k: int) -> None:
        for _ in range(k):
            one()
    per = max(1, n // threads)
    ts = [threading.Thread(target=worker, args=(per,)) for _ in range(threads)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    out[f"{threads}_threads_per_s"] = round(per * threads / (time.perf_counter() - t))
    return out


def exhaustion(code_root: Path, seconds: float, tmp: Path) -> dict[str, float]:
    err_path = tmp / "exhaust.err"
    with open(err_path, "w") as err:
        proc, url = start_server(code_root, fd_limit=48, stderr=err)
        host, port = url.removeprefix("http://").split(":")
        conns = [socket.create_connection((host, int(port)), timeout=5) for _ in range(120)]

        def cpu() -> float:
            f = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[-1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        c0 = cpu()
        time.sleep(seconds)  # the measurement window
        used = cpu() - c0
        for c in conns:
            c.close()
        t = time.monotonic()
        recovered = None
        while time.monotonic() - t < 60:
            try:
                with socket.create_connection((host, int(port)), timeout=5) as s:
                    s.sendall(b"GET /version HTTP/1.1\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        recovered = time.monotonic() - t
                        break
            except OSError:
                pass
            time.sleep(0.05)
        stop(proc)
    lines = [x for x in err_path.read_text().splitlines() if x.strip()]
    return {"seconds": seconds, "stderr_lines": len(lines), "server_cpu_s": round(used, 2),
            "recovered_after_s": round(recovered, 2) if recovered is not None else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--exhaust-seconds", type=float, default=10.0)
    ap.add_argument("--code-root", type=Path, default=REPO)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import tempfile

    srv, port = echo_server()
    proc, url = start_server(args.code_root)
    try:
        rate = connection_rate(url, port, args.connections, args.threads)
    finally:
        stop(proc)
        srv.close()
    with tempfile.TemporaryDirectory() as tmp:
        ex = exhaustion(args.code_root, args.exhaust_seconds, Path(tmp))
    result = {"code_root": str(args.code_root), "connections": rate, "exhaustion": ex}
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
