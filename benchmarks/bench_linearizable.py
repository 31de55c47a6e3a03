"""Benchmark: the linearizability checker on Porcupine's corpus (etcd Jepsen logs and kv logs).

    python benchmarks/bench_linearizable.py [--corpus DIR] [--repeat N] [--json]
    python benchmarks/bench_linearizable.py --per-key c50-bad.txt [--time-limit 20]
    python benchmarks/bench_linearizable.py --long 100000

For every etcd file: parse time and check time (the best of N runs: the machine is shared, the
minimum is the least noisy estimate of the cost), and whether the verdict is the expected one
(expected-etcd.txt). Then the same for each kv file (expected from the name: -ok / -bad).
Prints the totals (check only, and parse + check), the slowest files, and exits 1 if any
verdict is wrong or undecided. Figures go to docs/benchmarks.md with this command.
With --per-key, each key of one kv file is checked alone instead (the hard-key experiment of
EXPECTED.md: which keys are decided within the time limit). With --long N, a generated valid
register run of N ops (3 keys, about 8 ops in flight, 10% of updates info) is checked instead:
the shape of a long chaos run with many timeouts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos.checkers.linearizable import check_linearizable  # noqa: E402
from chaos.history.importers.porcupine import load  # noqa: E402
from chaos.history.model import History  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "porcupine"


def expected_etcd(corpus: Path) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for line in (corpus / "expected-etcd.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            n, v = line.split()
            out[f"etcd_{int(n):03d}.log"] = v == "true"
    return out


def measure(path: Path, expected: bool, repeat: int, time_limit: float) -> dict[str, Any]:
    """Best-of-`repeat` parse and check times for one file, with its verdict."""
    parse_s, check_s = float("inf"), float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        history = load(path)
        t1 = time.perf_counter()
        result = check_linearizable(history, {"time_limit": time_limit})
        t2 = time.perf_counter()
        parse_s, check_s = min(parse_s, t1 - t0), min(check_s, t2 - t1)
    assert result is not None
    return {"file": path.name, "ops": result.stats["ops"], "parse_s": parse_s,
            "check_s": check_s, "valid": result.valid, "expected": expected,
            "correct": result.valid is expected, "steps": result.stats["steps"],
            "configs": result.stats["peak_configs"]}


def per_key(path: Path, time_limit: float) -> int:
    """Check every key of one kv file as its own history; print verdict and time per key."""
    history = load(path)
    for key in sorted({op["key"] for op in history.ops}):
        sub = History.from_ops([op for op in history.ops if op["key"] == key])
        t0 = time.perf_counter()
        r = check_linearizable(sub, {"time_limit": time_limit})
        why = f"  ({r.stats['undecided'][0]['reason']})" if r.stats["undecided"] else ""
        print(f"key {key!r}: {r.stats['ops']} ops  valid={r.valid}  "
              f"{time.perf_counter() - t0:.2f} s  steps={r.stats['steps']}{why}", flush=True)
    return 0


def long_run(n: int, time_limit: float) -> int:
    """Check one generated long register run (the generator of tests/test_linearizable.py)."""
    from tests.test_linearizable import long_run as generate

    t0 = time.perf_counter()
    history = generate(n, 3, 8, 0.1, seed=7)
    t1 = time.perf_counter()
    r = check_linearizable(history, {"time_limit": time_limit})
    t2 = time.perf_counter()
    s = r.stats
    print(f"generated register run: {n} ops ({len(history.ops)} lines) in {t1 - t0:.2f} s; "
          f"check {t2 - t1:.2f} s = {s['ops'] / (t2 - t1):,.0f} ops/s; valid={r.valid}  "
          f"keys={s['keys']}  searched ops={s['ops']}  dropped={s['dropped_ops']}  "
          f"steps={s['steps']}  peak configs={s['peak_configs']}")
    return 0 if r.valid is True else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=10.0, help="budget per file (s)")
    ap.add_argument("--json", action="store_true", help="print every row as JSON")
    ap.add_argument("--per-key", metavar="KVFILE", help="check each key of this kv file alone")
    ap.add_argument("--long", type=int, metavar="N", help="check a generated N-op register run")
    args = ap.parse_args()
    if not (args.corpus / "expected-etcd.txt").exists():
        print(f"corpus not found at {args.corpus}", file=sys.stderr)
        return 4
    if args.long:
        return long_run(args.long, args.time_limit)
    if args.per_key:
        return per_key(args.corpus / "kv" / args.per_key, args.time_limit)

    exp = expected_etcd(args.corpus)
    etcd = [measure(args.corpus / "jepsen" / name, want, args.repeat, args.time_limit)
            for name, want in sorted(exp.items())]
    kv = [measure(args.corpus / "kv" / name, "-ok" in name, args.repeat, args.time_limit)
          for name in ("c01-ok.txt", "c01-bad.txt", "c10-ok.txt", "c10-bad.txt",
                       "c50-ok.txt", "c50-bad.txt")]
    if args.json:
        print(json.dumps({"etcd": etcd, "kv": kv}, indent=1))

    check = sum(r["check_s"] for r in etcd)
    parse = sum(r["parse_s"] for r in etcd)
    print(f"etcd: {len(etcd)} files, {sum(r['ops'] for r in etcd)} ops, "
          f"{sum(r['correct'] for r in etcd)} verdicts as expected, "
          f"{sum(r['valid'] == 'unknown' for r in etcd)} undecided")
    print(f"etcd total: check {check:.3f} s, parse {parse:.3f} s, parse+check {check + parse:.3f} s"
          f" (best of {args.repeat} per file)")
    checks = sorted(r["check_s"] for r in etcd)
    print(f"etcd per file: median {checks[len(checks) // 2] * 1e3:.2f} ms, "
          f"max {checks[-1] * 1e3:.1f} ms")
    print("slowest etcd files:")
    for r in sorted(etcd, key=lambda r: -r["check_s"])[:5]:
        print(f"  {r['file']}  {r['check_s'] * 1e3:7.1f} ms  valid={r['valid']}  "
              f"steps={r['steps']}  configs={r['configs']}")
    print("kv files:")
    for r in kv:
        print(f"  {r['file']:12s} ops={r['ops']:5d}  parse {r['parse_s'] * 1e3:6.1f} ms  "
              f"check {r['check_s'] * 1e3:8.1f} ms  valid={r['valid']}  "
              f"expected={r['expected']}  steps={r['steps']}")
    wrong = [r["file"] for r in etcd + kv if not r["correct"]]
    if wrong:
        print(f"WRONG or undecided: {', '.join(wrong)}")
        return 1
    print("all verdicts as expected, none undecided")
    return 0


if __name__ == "__main__":
    sys.exit(main())
