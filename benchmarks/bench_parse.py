"""Benchmark: parse + validate + pair a generated history.jsonl with read_history (lines/s).

    python benchmarks/bench_parse.py [--lines 1000000] [--workload set|register] [--repeat 3]
    python benchmarks/bench_parse.py --edn --lines 100000     # the Jepsen EDN importer

Generates a client history (10 processes interleaved, ~5% of completions "info", after which
the process is replaced by a new one) into a temp file, then times `read_history` end to
end: file read, JSON parsing, validation, pairing and the pandas DataFrame build. Prints the
best of N runs, as wall time and as this process's CPU time (on a shared, loaded machine the
CPU figure is the one that says what the code costs; the load average is printed alongside),
and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.history.importers import jepsen_edn  # noqa: E402
from chaos.history.reader import read_history  # noqa: E402


def to_edn(op: dict) -> str:
    """One op as a Jepsen-style EDN map (keywords for type/f, :nemesis for the nemesis)."""
    def v(x):
        if x is None:
            return "nil"
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, (list, tuple)):
            return "[" + " ".join(v(e) for e in x) + "]"
        if isinstance(x, str):
            return f'"{x}"'
        return str(x)
    parts = [f":index {op['index']}", f":time {op['time']}", f":type :{op['type']}",
             f":f :{op['f']}", f":process {op['process']}"]
    value = op.get("value")
    if "key" in op:
        value = [op["key"], value]
    parts.append(f":value {v(value)}")
    return "{" + ", ".join(parts) + "}"


def generate(path: Path, n_lines: int, workload: str, seed: int = 1) -> None:
    """Write ~n_lines lines: pairs of invoke/completion, 10 processes interleaved."""
    rnd = random.Random(seed)
    procs = 10
    open_ops: dict[int, dict] = {}
    t = 0
    idx = 0
    nxt_proc = procs
    active = list(range(procs))
    elem = 0
    buf: list[bytes] = []
    with open(path, "wb") as fh:
        while idx < n_lines:
            t += rnd.randint(1_000, 50_000)
            slot = rnd.randrange(procs)
            p = active[slot]
            if p in open_ops:
                inv = open_ops.pop(p)
                r = rnd.random()
                typ = "ok" if r < 0.9 else ("fail" if r < 0.95 else "info")
                op = dict(inv, index=idx, time=t, type=typ, node=f"n{rnd.randint(1, 3)}")
                if inv["f"] == "read" and typ == "ok":
                    op["value"] = rnd.randint(0, elem)
                if inv["f"] == "read-set" and typ == "ok":
                    op["value"] = list(range(max(0, elem - 20), elem))
                if typ == "info":
                    active[slot] = nxt_proc
                    nxt_proc += 1
            else:
                elem += 1
                if workload == "set":
                    f, v = ("add", elem) if rnd.random() < 0.9 else ("read-set", None)
                    op = {"index": idx, "time": t, "process": p, "type": "invoke", "f": f,
                          "value": v}
                else:
                    f = rnd.choice(("read", "write", "write", "cas"))
                    v = None if f == "read" else (elem if f == "write" else [elem - 1, elem])
                    op = {"index": idx, "time": t, "process": p, "type": "invoke", "f": f,
                          "key": f"k{rnd.randint(0, 4)}", "value": v}
                open_ops[p] = op
            buf.append(orjson.dumps(op))
            idx += 1
            if len(buf) >= 10_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--workload", choices=("set", "register"), default="register")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--edn", action="store_true", help="time the Jepsen EDN importer instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_parse_") as d:
        path = Path(d) / "history.jsonl"
        generate(path, args.lines, args.workload)
        load = read_history
        if args.edn:
            lines = [to_edn(orjson.loads(ln)) for ln in path.read_bytes().splitlines()]
            path = path.with_suffix(".edn")
            path.write_text("\n".join(lines) + "\n")
            load = jepsen_edn.load
        size = os.path.getsize(path)
        best = best_cpu = float("inf")
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            h = load(path)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
            n_ops = len(h.ops)
            del h
        avg = os.getloadavg()[0]
        name = args.workload + (" (EDN)" if args.edn else "")
        print(f"{name}: {n_ops} lines, {size / 1e6:.1f} MB, best of {args.repeat}: "
              f"wall {best:.2f} s = {n_ops / best:,.0f} lines/s; "
              f"CPU {best_cpu:.2f} s = {n_ops / best_cpu:,.0f} lines/s "
              f"(load average {avg:.1f} on {os.cpu_count()} cores); peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
