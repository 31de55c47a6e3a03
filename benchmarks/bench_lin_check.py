"""Benchmark: CPU time of the linearizable check alone on a big history (issue 15's check).

    nice -n 10 python benchmarks/bench_lin_check.py /tmp/register-1m.jsonl --repeat 3

Reads and splits the history once (chaos.history.stream: not measured), then checks its
shards in order with the linearizable checker only, as one checking process does
(chaos.checkers.shard_pool.check_shards, pieces of a key carried), `--repeat` times. Printed
per run: CPU seconds (time.process_time) spent inside the checker's `check`, and
microseconds per op. `--profile N` prints the N costliest functions of one run (cProfile).
`--dump FILE` writes the merged result without its timing (verdict, stats, anomalies) as
JSON, so two versions of the checker can be compared for identical output. `--no-paths`:
the exact search on every window (no witness paths: chaos.checkers.linearizable.witness).
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.checkers import CHECKERS, evidence  # noqa: E402
from chaos.checkers.shard_pool import Plan, check_shards  # noqa: E402
from chaos.checkers.sharded import _model, merge_linearizable  # noqa: E402
from chaos.history.spill import make_directory  # noqa: E402
from chaos.history.stream import split_history  # noqa: E402
from chaos.checkers.linearizable.checker import ALL_FS  # noqa: E402


def timed_checker() -> list[float]:
    """Wrap the linearizable checker's `check` to add up its CPU seconds in the list."""
    spent: list[float] = []
    checker = CHECKERS["linearizable"]
    inner = type(checker).check

    def check(history: Any, opts: Any = None) -> Any:
        t0 = time.process_time()
        try:
            return inner(checker, history, opts)
        finally:
            spent.append(time.process_time() - t0)

    checker.check = check  # type: ignore[method-assign]
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--no-paths", action="store_true")
    args = ap.parse_args()
    directory = make_directory()
    try:
        split = split_history(args.path, directory, cuttable=ALL_FS)
        opts: dict[str, Any] = {"time_limit": args.time_limit}
        plan = Plan(split=split, names=["linearizable"], wanted={"linearizable": True},
                    opts=opts, model=_model(split, opts), windows=[], overlaps=[],
                    thresholds=evidence.Thresholds.from_opts(opts),
                    lin_limit=args.time_limit)
        indices = [i for i in range(split.n_shards) if split.shard_rows[i]]
        spent = timed_checker()
        n_ops = split.ops
        for run in range(args.repeat + (1 if args.profile else 0)):
            spent.clear()
            gc.collect()
            prof = cProfile.Profile() if args.profile and run == args.repeat else None
            if prof is not None:
                prof.enable()
            outs = check_shards(plan, indices, paths=not args.no_paths)
            if prof is not None:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
                continue
            cpu = sum(spent)
            r = merge_linearizable([o.results["linearizable"] for o in outs], 1000)
            print(f"run {run}: {cpu:.2f} s CPU in check, {cpu / n_ops * 1e6:.2f} us/op "
                  f"({n_ops} ops), valid={r.valid} steps={r.stats.get('steps')} "
                  f"peak={r.stats.get('peak_configs')}", flush=True)
            if args.dump and run == 0:
                doc = r.to_dict() if hasattr(r, "to_dict") else vars(r)
                doc = dict(doc)
                doc["stats"] = {k: v for k, v in doc["stats"].items() if k != "seconds"}
                args.dump.write_bytes(orjson.dumps(doc, default=repr,
                                                   option=orjson.OPT_INDENT_2))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
