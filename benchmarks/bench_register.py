"""Benchmark: register histories in bounded memory, analysis and report (issue 15).

    nice -n 19 python benchmarks/bench_register.py --lines 1000000 10000000 --delete

For each size: generates a register history (benchmarks/gen_history.py, 5 keys, 16 clients)
into --dir (reused if there), then measures under `/usr/bin/time -v`:

1. `chaos analyze --no-results FILE`: the register keys are cut into pieces at quiescent
   points, linearizability and stale reads carried across the cuts (chaos.history.stream,
   chaos.checkers.sharded);
2. `chaos analyze RUNDIR` on a run directory holding that history (writes results.json),
   then `chaos report RUNDIR`: report.html from a bounded sample (chaos.report.sample).

Printed per command: exit code and first output line, wall and CPU seconds, peak RSS
(`time -v`: the largest single process; and the sum over the process tree sampled every
50 ms), and the load average before and after (wall time follows the shared machine's load,
CPU time is what the code costs).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_big import count_lines, measure_chaos  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAOS = [sys.executable, "-m", "chaos"]


def measure(args: list[str]) -> dict:
    """Run `chaos ARGS` under /usr/bin/time -v; its figures (module doc)."""
    r = measure_chaos(args)
    r["first"] = r.pop("verdict")
    return r


def show(what: str, lines: int, r: dict) -> None:
    print(f"{what}: exit {r['exit']}, {r['first']}\n  wall {r['wall']:.1f} s, CPU "
          f"{r['cpu']:.1f} s ({lines / max(r['cpu'], 1e-9):,.0f} lines/s CPU); peak RSS "
          f"{r['rss'] / 1e6:,.0f} MB (time -v), {r['tree_rss'] / 1e6:,.0f} MB (process tree, "
          f"sampled); load {r['load'][0]:.1f} -> {r['load'][1]:.1f} on {os.cpu_count()} cores",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", nargs="+", type=int, default=[1_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/chaos-bench-register"))
    ap.add_argument("--no-report", action="store_true", help="only chaos analyze FILE")
    ap.add_argument("--delete", action="store_true", help="remove the histories afterwards")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for n in args.lines:
        path = args.dir / f"register-{n}.jsonl"
        if not path.exists():
            t0 = time.time()
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_history.py"),
                            "--workload", "register", "--lines", str(n), "--out", str(path)],
                           check=True)
            print(f"generated {path} in {time.time() - t0:.0f} s", flush=True)
        lines = count_lines(path)
        print(f"register history: {lines:,} lines, {path.stat().st_size / 1e9:.2f} GB")
        show("chaos analyze --no-results FILE", lines, measure(["analyze", "--no-results",
                                                                 str(path)]))
        if not args.no_report:
            run = args.dir / f"run-{n}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            os.link(path, run / "history.jsonl")
            show("chaos analyze RUNDIR (writes results.json)", lines,
                 measure(["analyze", str(run)]))
            show("chaos report RUNDIR", lines, measure(["report", str(run)]))
            html = run / "report.html"
            print(f"  report.html: {html.stat().st_size / 1e6:.1f} MB, sampled: "
                  f"{'this report is sampled' in html.read_text()}")
            shutil.rmtree(run)
        if args.delete:
            path.unlink()


if __name__ == "__main__":
    main()
