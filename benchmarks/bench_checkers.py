"""Benchmark the lost-writes, stale-reads and dual-leaders checkers on 1,000,000-op histories.

Usage:  python benchmarks/bench_checkers.py [--ops 1000000] [--repeat 3] [--seed 1]

The histories are generated in memory (the pairs frame built directly with
chaos.history.model.make_pairs_frame) so only the check is timed, not parsing:

- set: 10 logical processes; sets spread over keys of 250 ops each (about 245 adds and 5 reads,
  reads return what was added before them), then one final read per key: about 1M ops,
  ~3M elements inside reads. A second variant drops 0.1% of acked adds from the final reads.
- register: 50 keys, 50% reads / 40% writes / 10% cas, ops overlapping (several in flight),
  every read returns the value of the last write invoked before it (a linearizable history),
  plus 5% monitor status observations of 3 nodes with a leader change every 2000
  observations; the client ops' node is the leader. A second variant makes 0.1% of reads stale.

Reported: best wall time and best CPU time of --repeat runs per checker, and ops/s = history
ops / that time (CPU time is the fairer figure on a shared, loaded machine).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.checkers.dual_leaders import DUAL_LEADERS  # noqa: E402
from chaos.checkers.lost_writes import LOST_WRITES  # noqa: E402
from chaos.checkers.stale_reads import STALE_READS  # noqa: E402
from chaos.history.model import COLUMNS, History, make_pairs_frame  # noqa: E402

NODES = ["n1", "n2", "n3"]


def _frame(cols: dict[str, object], n: int) -> pd.DataFrame:
    """A pairs frame from column arrays (missing object columns are None)."""
    rows_cols = []
    for name in COLUMNS:
        if name in cols:
            rows_cols.append(cols[name])
        elif name == "final":
            rows_cols.append(np.zeros(n, dtype=bool))
        else:
            rows_cols.append([None] * n)
    return make_pairs_frame(list(zip(*rows_cols)))


def set_history(n_ops: int, seed: int = 1, lose: float = 0.0) -> History:
    """A set-workload history of about n_ops ops (see the module doc)."""
    rng = np.random.default_rng(seed)
    per_key = 250
    n_keys = max(1, n_ops // (per_key + 1))
    procs, fs, keys, vals, results, inv, cmp, finals, nodes = [], [], [], [], [], [], [], [], []
    t = 0
    elem = 0
    lost_total = 0
    for k in range(n_keys):
        key = f"s{k}"
        added: list[tuple[int, int]] = []  # (complete_time, element)
        for j in range(per_key):
            t += 1000
            dur = int(rng.integers(500, 20000))
            if j % 50 == 49:  # a read: elements acked before it was invoked
                res = sorted(e for c, e in added if c < t)
                fs.append("read-set")
                vals.append(None)
                results.append(res)
            else:
                fs.append("add")
                vals.append(elem)
                results.append(None)
                added.append((t + dur, elem))
                elem += 1
            procs.append(j % 10)
            keys.append(key)
            inv.append(t)
            cmp.append(t + dur)
            finals.append(False)
            nodes.append("n1")
        t += 1000
        res = [e for _, e in added]
        if lose:
            keep = rng.random(len(res)) >= lose
            lost_total += int((~keep).sum())
            res = [e for e, kp in zip(res, keep) if kp]
        procs.append(0)
        fs.append("read-set")
        keys.append(key)
        vals.append(None)
        results.append(res)
        inv.append(t + 30000)
        cmp.append(t + 31000)
        finals.append(True)
        nodes.append("n2")
    n = len(fs)
    cols = {"process": procs, "f": fs, "key": keys, "value": vals, "result": results,
            "type": ["ok"] * n, "invoke_time": inv, "complete_time": cmp,
            "invoke_index": np.arange(n) * 2, "complete_index": np.arange(n) * 2 + 1,
            "node": nodes, "final": np.asarray(finals)}
    h = History(ops=[], pairs=_frame(cols, n))
    h.lost = lost_total  # type: ignore[attr-defined]
    return h


def register_history(n_ops: int, seed: int = 1, stale: float = 0.0) -> History:
    """A register history with monitor observations (see the module doc)."""
    rng = np.random.default_rng(seed)
    n_mon = n_ops // 20
    n_cli = n_ops - n_mon
    inv = np.arange(n_cli, dtype=np.int64) * 1000
    cmp = inv + rng.integers(500, 5000, n_cli)
    key = rng.integers(0, 50, n_cli)
    r = rng.random(n_cli)
    f = np.where(r < 0.5, "read", np.where(r < 0.9, "write", "cas")).astype(object)
    value = np.arange(n_cli, dtype=np.int64)
    is_w = f != "read"
    df = pd.DataFrame({"key": key, "v": np.where(is_w, value, -1)})
    df["v"] = df["v"].where(is_w)
    prev = df.groupby("key")["v"].transform(lambda s: s.ffill().shift(1))
    current = [None if x != x else int(x) for x in prev.to_numpy()]  # value before each op
    vals = np.empty(n_cli, dtype=object)
    results = np.empty(n_cli, dtype=object)
    reads = ~is_w
    vals[reads] = None
    results[reads] = [current[i] for i in np.flatnonzero(reads)]
    if stale:
        # a read returning the value two writes back on its key: surely overwritten
        cand = np.flatnonzero(reads)
        pick = cand[rng.random(len(cand)) < stale]
        for i in pick:
            k = key[i]
            ws = np.flatnonzero(is_w[: max(i - 200, 0)] & (key[: max(i - 200, 0)] == k))
            if len(ws):
                results[i] = int(value[ws[-1]])
    ww = np.flatnonzero(f == "write")
    vals[ww] = value[ww].tolist()
    cc = np.flatnonzero(f == "cas")
    vals[cc] = [[current[i], int(value[i])] for i in cc]
    term_len = 2000
    leader = [NODES[(i // 20 // term_len) % 3] for i in range(n_cli)]
    m_inv = np.arange(n_mon, dtype=np.int64) * 20000 + 7
    m_node = [NODES[i % 3] for i in range(n_mon)]
    m_term = [(i // term_len) + 1 for i in range(n_mon)]
    m_res = [{"role": "leader" if NODES[(i // term_len) % 3] == m_node[i] else "follower",
              "term": m_term[i], "leader": NODES[(i // term_len) % 3]} for i in range(n_mon)]
    # merge client and monitor ops by invoke time
    all_inv = np.concatenate([inv, m_inv])
    order = np.argsort(all_inv, kind="stable")
    n = n_ops
    def cat(a: object, b: object) -> np.ndarray:
        return np.concatenate([np.asarray(a, dtype=object), np.asarray(b, dtype=object)])[order]
    cols = {
        "process": cat((np.arange(n_cli) % 10).tolist(), ["monitor"] * n_mon),
        "f": cat(f, ["status"] * n_mon), "key": cat(key.astype(str).tolist(), [None] * n_mon),
        "value": cat(vals, [None] * n_mon), "result": cat(results, m_res),
        "type": ["ok"] * n, "invoke_time": all_inv[order],
        "complete_time": np.concatenate([cmp, m_inv + 300])[order],
        "invoke_index": np.arange(n) * 2, "complete_index": np.arange(n) * 2 + 1,
        "node": cat(leader, m_node),
    }
    return History(ops=[], pairs=_frame(cols, n))


def bench(checker, history: History, repeat: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time (process_time: less sensitive to a loaded machine)."""
    best = best_cpu = float("inf")
    res = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = checker.check(history, {})
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cases = [
        ("lost-writes", LOST_WRITES, "set", lambda: set_history(args.ops, args.seed)),
        ("lost-writes", LOST_WRITES, "set, 0.1% lost",
         lambda: set_history(args.ops, args.seed, lose=0.001)),
        ("stale-reads", STALE_READS, "register", lambda: register_history(args.ops, args.seed)),
        ("stale-reads", STALE_READS, "register, 0.1% stale",
         lambda: register_history(args.ops, args.seed, stale=0.001)),
        ("dual-leaders", DUAL_LEADERS, "register+monitor",
         lambda: register_history(args.ops, args.seed)),
    ]
    print(f"{'checker':<14} {'history':<22} {'ops':>9} {'wall s':>7} {'ops/s':>10} "
          f"{'cpu s':>7} {'ops/cpu-s':>10}  verdict")
    for name, checker, label, make in cases:
        h = make()
        secs, cpu, res = bench(checker, h, args.repeat)
        n = len(h.pairs)
        found = sum(1 for a in res.anomalies if a.severity == "anomaly")
        print(f"{name:<14} {label:<22} {n:>9} {secs:>7.3f} {n / secs:>10,.0f} {cpu:>7.3f} "
              f"{n / cpu:>10,.0f}  "
              f"valid={res.valid} anomalies={found} stats={_short(res.stats)}", flush=True)


def _short(stats: dict) -> str:
    keep = ("lost", "stale", "divergent", "unexpected", "leader_intervals", "same_term_leaders",
            "overlapping_leaders", "split_brain_windows")
    return ",".join(f"{k}={stats[k]}" for k in keep if k in stats)


if __name__ == "__main__":
    main()
