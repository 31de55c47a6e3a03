"""Benchmark the CI outputs: JUnit, the JSON Schema check, `chaos ci summary`, the pytest plugin.

Usage:  python benchmarks/bench_ci.py [--ops 1000000] [--lose 0.001] [--runs 200] [--repeat 5]

1. A set-workload history of --ops ops (benchmarks/bench_checkers.set_history, built in
   memory) with a fraction --lose of acknowledged adds missing from the final reads is
   checked with lost-writes; its results document (thousands of lost-write anomalies, the
   worst case for the JUnit body and the schema) is then written as JUnit
   (chaos.report.junit.write_junit: the path of `chaos run/analyze/report --junit`) and
   validated against chaos/report/results.schema.json. Best of --repeat, wall and CPU.
2. `chaos ci summary` over a store of --runs run directories (copies of that results.json),
   in-process (chaos.ci.summary), best of --repeat.
3. The pytest plugin's cost for a session that does not use it: `python -m pytest` on a
   one-test project with the plugin autoloaded vs `-p no:chaos`, CPU of the child (user+sys),
   median of --repeat each.

Run it under `/usr/bin/time -v` for the peak RSS of parts 1-2 (part 3 runs in children).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_checkers import set_history  # noqa: E402

from chaos.checkers.lost_writes import LOST_WRITES  # noqa: E402
from chaos.report.junit import write_junit  # noqa: E402
from chaos.report.results import results_document  # noqa: E402
from chaos.store import dumps_json  # noqa: E402


def best(fn, repeat: int) -> tuple[float, float]:
    """(best wall, best CPU) seconds of `repeat` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def child_cpu(argv: list[str], cwd: str) -> float:
    """user+sys CPU seconds of one child process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--lose", type=float, default=0.001)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import jsonschema

    from chaos.api import RESULTS_SCHEMA
    from chaos.ci.summary import markdown, row, run_dirs

    history = set_history(args.ops, lose=args.lose)
    result = LOST_WRITES.check(history, {"final_reads_expected": True})
    doc = json.loads(dumps_json(results_document(
        {"valid": result.valid, "results": {"lost-writes": result}}, history=history,
        path="bench", fmt="jsonl")))
    n_anom = len(doc["results"]["lost-writes"]["anomalies"])
    size = len(dumps_json(doc, indent=True))
    print(f"history: {len(history.pairs):,} ops; results document: {n_anom:,} anomalies, "
          f"{size / 1e6:.1f} MB as results.json; verdict {doc['valid']}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "junit.xml"
        wall, cpu = best(lambda: write_junit(doc, out, suite_name="bench"), args.repeat)
        print(f"write_junit: wall {wall * 1e3:.1f} ms, CPU {cpu * 1e3:.1f} ms, "
              f"{out.stat().st_size / 1e3:.0f} kB")
        validator = jsonschema.Draft202012Validator(json.loads(RESULTS_SCHEMA.read_text()))
        wall, cpu = best(lambda: validator.validate(doc), args.repeat)
        print(f"schema validation: wall {wall * 1e3:.1f} ms, CPU {cpu * 1e3:.1f} ms")

        store = Path(tmp) / "store"
        text = dumps_json(doc, indent=True)
        for i in range(args.runs):
            d = store / f"t{i % 10}" / f"20261206T{i:06d}"
            d.mkdir(parents=True)
            (d / "results.json").write_bytes(text)
            (d / "config.json").write_text(json.dumps({"config": {"seed": i}}))
        wall, cpu = best(lambda: markdown([row(d) for d in run_dirs([store])]), args.repeat)
        print(f"ci summary of {args.runs} runs ({size / 1e6:.1f} MB results.json each): "
              f"wall {wall:.2f} s, CPU {cpu:.2f} s")

        proj = Path(tmp) / "proj"
        proj.mkdir()
        (proj / "test_one.py").write_text("def test_one():\n    assert True\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        env_on = [child_cpu(base, str(proj)) for _ in range(args.repeat)]
        env_off = [child_cpu(base + ["-p", "no:chaos"], str(proj)) for _ in range(args.repeat)]
        on, off = statistics.median(env_on), statistics.median(env_off)
        print(f"pytest one-test session CPU (median of {args.repeat}): plugin loaded "
              f"{on * 1e3:.0f} ms, -p no:chaos {off * 1e3:.0f} ms, difference "
              f"{(on - off) * 1e3:+.0f} ms")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
