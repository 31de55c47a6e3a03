"""Benchmark the evidence rules (chaos.checkers.evidence) on the 1,000,000-op histories.

Usage:  python benchmarks/bench_evidence.py [--ops 1000000] [--repeat 3]

The same in-memory histories as bench_checkers.py (set with final reads; register with 5%
monitor observations). Timed: `evidence.assess` alone (every history-level rule plus the
per-checker rules, given the checkers' results), i.e. what run_checkers adds to a check.
Reported: best wall and CPU time of --repeat runs, and history ops per CPU second.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_checkers import register_history, set_history  # noqa: E402

from chaos.checkers import select_checkers  # noqa: E402
from chaos.checkers.base import check_safe  # noqa: E402
from chaos.checkers.evidence import assess  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'history':<12} {'ops':>8} {'wall s':>7} {'cpu s':>7} {'ops/cpu-s':>11}  reasons")
    for name, h, checkers in (
            ("set", set_history(args.ops), ["lost-writes"]),
            ("register", register_history(args.ops), ["stale-reads", "dual-leaders"])):
        results = {n: check_safe(c, h) for n, c in select_checkers(h, checkers).items()}
        best_w = best_c = float("inf")
        ev = None
        for _ in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            ev = assess(h, results)
            best_w = min(best_w, time.perf_counter() - w0)
            best_c = min(best_c, time.process_time() - c0)
        n = len(h.pairs)
        assert ev is not None
        print(f"{name:<12} {n:>8} {best_w:>7.3f} {best_c:>7.3f} {n / best_c:>11,.0f}  "
              f"{len(ev.reasons)} run, {sum(map(len, ev.checkers.values()))} checker")


if __name__ == "__main__":
    main()
