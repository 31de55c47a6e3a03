"""Benchmark: CPU time of the bounded-memory check of a split history, per part (issue 15).

    nice -n 10 python benchmarks/bench_shard_check.py /tmp/register-1m.jsonl [--repeat N]

Reads and splits the history once (chaos.history.stream: its wall and CPU time printed, not
counted), then checks every shard in order in this process, as one checking process does
(chaos.checkers.shard_pool.check_shards, pieces of a key carried). Printed per run: the CPU
seconds (time.process_time) of check_shards and microseconds per client op, then the CPU
seconds inside each part: loading a shard (Split.shard), each per-key checker's `check`,
evidence.client_facts, PerfParts.of, register_facts and the write carry. What check_shards
spends outside those parts is its own per-shard work. CPU time, not wall: another process
may be loading the machine; compare two versions in alternated runs.
"""
from __future__ import annotations

import argparse
import functools
import gc
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import chaos.checkers.shard_pool as sp  # noqa: E402
import chaos.history.split as splitmod  # noqa: E402
from chaos.checkers import CHECKERS, evidence  # noqa: E402
from chaos.checkers.linearizable.checker import ALL_FS  # noqa: E402
from chaos.checkers.shard_pool import Plan, check_shards  # noqa: E402
from chaos.checkers.sharded import _model  # noqa: E402
from chaos.history.faults import fault_windows  # noqa: E402
from chaos.history.spill import make_directory  # noqa: E402
from chaos.history.stream import split_history  # noqa: E402

SPENT: dict[str, float] = {}


def timed(owner: Any, name: str, label: str) -> None:
    """Replace owner.name by a wrapper that adds its CPU time to SPENT[label]."""
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[label] = SPENT.get(label, 0.0) + time.process_time() - t0
    setattr(owner, name, wrapper)


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (the split's readers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("history")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for name, checker in CHECKERS.items():
        timed(type(checker), "check", name)
    timed(splitmod.Split, "shard", "load shard")
    timed(sp.evidence, "client_facts", "client_facts")
    timed(sp.PerfParts, "of", "perf")
    timed(sp, "register_facts", "register_facts")
    timed(sp.WriteCarry, "keep", "writecarry")
    directory = make_directory()
    try:
        t0, c0 = time.perf_counter(), _cpu_with_children()
        split = split_history(args.history, directory, cuttable=ALL_FS)
        print(f"split: wall {time.perf_counter() - t0:.2f} s, "
              f"CPU {_cpu_with_children() - c0:.2f} s (its reading processes too), "
              f"{split.ops} ops")
        opts: dict[str, Any] = {"time_limit": 600.0}
        ctx = split.context_history()
        plan = Plan(split=split, names=None,
                    wanted={"lost-writes": "read-set" in split.client_fs,
                            "stale-reads": True, "linearizable": True},
                    opts=opts, model=_model(split, opts),
                    windows=fault_windows(ctx, split.end_time), overlaps=[],
                    thresholds=evidence.Thresholds.from_opts(opts), lin_limit=600.0)
        shards = [i for i in range(split.n_shards) if split.shard_rows[i]]
        for _ in range(args.repeat):
            SPENT.clear()
            gc.collect()
            c0 = time.process_time()
            check_shards(plan, shards)
            total = time.process_time() - c0
            print(f"check_shards: CPU {total:.2f} s = {total / split.ops * 1e6:.2f} us/op")
            rest = total
            for label, s in sorted(SPENT.items(), key=lambda kv: -kv[1]):
                print(f"  {label:<16} {s:.2f}")
                rest -= s
            print(f"  {'(own work)':<16} {rest:.2f}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
