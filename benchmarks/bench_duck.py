"""Benchmark: the DuckDB reader's two passes over a history, each alone (CPU and wall).

    python benchmarks/bench_duck.py /tmp/chaos-bench-big/register-10000000.jsonl --repeat 3

`query`: DuckDB's read of the file with the reader's query (chaos.history.duck._query), its
Arrow batches fetched and dropped, on a connection with one thread per core as the reader
uses. `scan`: the scan for lines DuckDB takes and JSON refuses (chaos.history.duck.
lenient_scan), on the calling thread. Printed per run: wall and CPU seconds of the process
(DuckDB's threads and pyarrow's included: time.process_time). Neither pass includes the
Python pairing that follows the query in `chaos analyze` (benchmarks/bench_big.py measures
everything end to end).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos.history import duck  # noqa: E402
from chaos.history.forked import cores  # noqa: E402


def run_query(path: Path) -> int:
    """Rows read by the reader's query, its batches fetched as `chaos analyze` does."""
    con = duck._connect(max(1, cores()), None)
    try:
        reader = con.sql(duck._query(path)).to_arrow_reader(duck.BATCH_ROWS)
        rows = 0
        while True:
            try:
                rows += reader.read_next_batch().num_rows
            except StopIteration:
                return rows
    finally:
        con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("query", "scan"), help="measure one pass only")
    args = ap.parse_args()
    passes = {"query": lambda: run_query(args.path),
              "scan": lambda: duck.lenient_scan(args.path)}
    for run in range(args.repeat):
        for name, fn in passes.items():
            if args.only and name != args.only:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            got = fn()
            print(f"run {run} {name}: wall {time.perf_counter() - wall:.2f} s, "
                  f"CPU {time.process_time() - cpu:.2f} s ({got})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
