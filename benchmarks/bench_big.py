"""Benchmark: `chaos analyze` of big generated histories, end to end (lines/s, peak RSS).

    nice -n 19 python benchmarks/bench_big.py --workload set register --lines 1000000 10000000
    nice -n 19 python benchmarks/bench_big.py --workload set --lines 30000000 --delete
    python benchmarks/bench_big.py --workload set --lines 10000000 --reader duckdb orjson

For each workload and size: generates the history with benchmarks/gen_history.py into --dir
(reused when it is already there; --delete removes it afterwards: 30M set lines are ~6.5 GB),
then runs `/usr/bin/time -v chaos analyze --no-results FILE` and prints, per history: lines,
size, wall and CPU (user+sys) seconds, lines/s by wall and by CPU, the exit code and verdict,
and two peaks of memory (`--reader`: which reader parses the lines, CHAOS_HISTORY_READER;
auto is DuckDB's from 8 MB on):

- `time -v`'s maximum resident set size: of the biggest single process (wait4 reports the
  largest of the analysis and its reader processes, not their sum);
- the peak of the sum of the RSS of the analysis and all its descendants, sampled every
  50 ms from /proc: what the machine actually had to hold at once (an upper bound: pages a
  forked reader shares with its parent are counted twice).

The load average before and after is printed too: on a shared machine the wall time follows
the load, the CPU time is what the code costs.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAOS = [sys.executable, "-m", "chaos"]


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(64 << 20):
            n += chunk.count(b"\n")
    return n


def _tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and all its descendants (0 once it is gone)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
            todo += [int(c) for c in
                     Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def measure(path: Path) -> dict:
    """`chaos analyze --no-results PATH` under /usr/bin/time -v."""
    return measure_chaos(["analyze", "--no-results", str(path.resolve())])


def measure_chaos(args: list[str]) -> dict:
    """Run `chaos ARGS` under /usr/bin/time -v: exit code, first output line (`verdict`),
    wall and CPU seconds, peak RSS of the largest process (`rss`) and of the process tree
    sampled every 50 ms (`tree_rss`), the load average before and after."""
    load0 = os.getloadavg()[0]
    # the tree this script is in is the one measured: `python -m` puts the working
    # directory first on sys.path, ahead of PYTHONPATH, so it runs from ROOT too (from
    # another tree's directory, that tree's chaos would run)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(["/usr/bin/time", "-v", *CHAOS, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, cwd=ROOT)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _tree_rss(proc.pid))
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    stop.set()
    t.join()

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}: (.+)", err)
        return m.group(1).strip() if m else "0"
    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return {"exit": proc.returncode, "verdict": out.splitlines()[0] if out else err[-300:],
            "wall": secs, "cpu": cpu, "rss": int(field("Maximum resident set size (kbytes)"))
            * 1024, "tree_rss": peak[0], "load": (load0, os.getloadavg()[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", nargs="+", default=["set"], choices=("set", "register"))
    ap.add_argument("--lines", nargs="+", type=int, default=[1_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/chaos-bench-big"))
    ap.add_argument("--delete", action="store_true", help="remove the histories afterwards")
    ap.add_argument("--reader", nargs="+", default=["auto"],
                    choices=("auto", "duckdb", "orjson"),
                    help="CHAOS_HISTORY_READER for the analysis: each one in turn per history")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for workload in args.workload:
        for n in args.lines:
            path = args.dir / f"{workload}-{n}.jsonl"
            if not path.exists():
                t0 = time.time()
                subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_history.py"),
                                "--workload", workload, "--lines", str(n), "--out",
                                str(path)], check=True)
                print(f"generated {path} in {time.time() - t0:.0f} s", flush=True)
            lines = count_lines(path)
            for reader in args.reader:
                os.environ["CHAOS_HISTORY_READER"] = reader
                report(workload, lines, path, reader, measure(path))
            if args.delete:
                path.unlink()


def report(workload: str, lines: int, path: Path, reader: str, r: dict) -> None:
    print(f"{workload} {lines:,} lines ({path.stat().st_size / 1e9:.2f} GB, reader "
          f"{reader}): exit {r['exit']}, {r['verdict']}\n  wall {r['wall']:.1f} s = "
          f"{lines / r['wall']:,.0f} lines/s; CPU {r['cpu']:.1f} s = "
          f"{lines / r['cpu']:,.0f} lines/s; peak RSS {r['rss'] / 1e6:,.0f} MB "
          f"(time -v, largest process), {r['tree_rss'] / 1e6:,.0f} MB (all "
          f"processes at once, sampled); load {r['load'][0]:.1f} -> "
          f"{r['load'][1]:.1f} on {os.cpu_count()} cores", flush=True)


if __name__ == "__main__":
    main()
