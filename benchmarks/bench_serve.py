"""Benchmark: `chaos serve` page latency on a store of 10,000 runs.

    python benchmarks/bench_serve.py [--runs 10000] [--requests 50] [--store DIR]

Generates the store with tests/storegen.py (real results documents of histories/, each run
appended to store/index.jsonl as a finished run is; timed), starts a real `chaos serve`
subprocess on it (its start: loading and checking the index against the run directories,
timed), then requests each page `--requests` times over HTTP, one at a time, and prints
p50 / p95 / max latency per page, the server's CPU time per request (on a loaded, shared
machine the figure that says what a page costs), the response size, and the server's peak
RSS (VmHWM).
Then the same after `--reindex` (the index rebuilt from every run directory).
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.storegen import make_store  # noqa: E402


def start(store: Path, *extra: str) -> tuple[subprocess.Popen, str, float]:
    log = store.parent / "serve.log"
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "serve", "--store", str(store),
                             "--port", "0", *extra], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    while True:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text())
        if m:
            return proc, m.group(1), time.monotonic() - t0
        if proc.poll() is not None:
            raise SystemExit(f"chaos serve exited: {log.read_text()}")
        time.sleep(0.05)  # polling the log for the URL line


def get(port: str, path: str) -> tuple[float, int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    dt = time.perf_counter() - t0
    conn.close()
    return dt, resp.status, len(body)


def hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """The process's user + system CPU time (s), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: str, pid: int, pages: dict[str, str], n: int) -> None:
    print(f"{'page':28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'cpu ms':>8} {'bytes':>9}"
          "  status")
    for name, path in pages.items():
        times, statuses, size = [], set(), 0
        cpu0 = cpu_s(pid)
        for _ in range(n):
            dt, status, size = get(port, path)
            times.append(dt * 1000)
            statuses.add(status)
        cpu_ms = (cpu_s(pid) - cpu0) * 1000 / n   # the server's CPU per request (mean)
        times.sort()
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(f"{name:28} {times[len(times) // 2]:8.1f} {p95:8.1f} {times[-1]:8.1f} "
              f"{cpu_ms:8.1f} {size:9d}  {sorted(statuses)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--store", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serve-")) if args.store is None else args.store
    store = root / "store"
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    if not store.exists():
        t0 = time.monotonic()
        ids = make_store(store, args.runs)
        print(f"generated {len(ids)} runs in {time.monotonic() - t0:.1f} s "
              f"(index.jsonl {(store / 'index.jsonl').stat().st_size / 1e6:.1f} MB)")
    else:
        ids = sorted(p.name for p in store.glob("*/*"))
    etcd = next(i for i in sorted(str(p.relative_to(store)) for p in store.glob("etcd-*/*")))
    config = ("kvlite -O failover=naive -O replication=async set partition")
    pages = {
        "run list, page 1": "/",
        "filtered (invalid, etcd)": "/?verdict=invalid&target=etcd",
        "search 'lost-write'": "/?q=lost-write",
        "sorted by ops/s, page 50": "/?sort=ops&order=asc&page=50",
        "trends (configurations)": "/trends",
        "trend of one config": "/trends?config=" + quote(config, safe=""),
        "one run": f"/run/{etcd}",
        "a report file": f"/files/{etcd}/report.html",
        "outside the store (404)": "/files/../../etc/passwd",
    }
    for label, extra in (("index as written by the runs", ()), ("--reindex", ("--reindex",))):
        proc, port, started = start(store, *extra)
        try:
            print(f"\n{label}: chaos serve answered after {started:.2f} s (process start + "
                  "index load/check)")
            measure(port, proc.pid, pages, args.requests)
            print(f"server peak RSS: {hwm_kib(proc.pid) / 1024:.0f} MiB")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
