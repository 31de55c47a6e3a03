"""Check a history of any length in bounded memory: read it in shards by key, run the same
checkers on each shard, merge their results.

`chaos.history.stream` reads the history a block at a time and spills its operations to
shards, every op of a key in one shard, the non-client ops (faults, monitor, controller) in a
small in-memory context. Then, one shard in memory at a time in each checking process (one
per core for a big history: chaos.checkers.shard_pool, which merges in shard order):

- the per-key checkers (lost writes, stale reads, linearizability: each judges a key from
  that key's ops alone) run on the shard as they would on the whole history; their results
  are merged (counts add up, anomalies are listed by time);
- perf, the evidence rules and dual-leaders' split-brain acknowledgements take mergeable
  parts of each shard (`PerfParts`, `evidence.ClientFacts`, the ok writes inside a
  leadership overlap);
- dual leaders, the explanations and the monitor/fault rules read the context.

So there is one implementation of every rule; this module only splits and merges. Peak
memory is one shard's History per checking process plus what a checker keeps by definition
(latencies, the merged counts), not the history's length. The counter checker sums over all
keys, so a counter history is read in memory (`Doubt`), as is anything the streaming reader
doubts.

Known differences from an in-memory run, none in a verdict or an anomaly count: past
opts["max_anomalies"] anomalies of a kind the listed sample may differ; when the
linearizable search finds an invalid key it stops, so which invalid key is shown and which
other keys it had finished by then (keys_valid, skipped_keys, steps, peak_configs) depend on
the order keys are searched in: one search interleaves all keys, here shard after shard.

A piece of a long key cannot know what later pieces hold, which shows in stale-reads (never
in the verdict: each case is a read that is not linearizable) in histories that break its
premises: a read of a value that only a later piece writes (a read of the future) counts in
reads_of_unwritten_values (or reads_of_failed_writes); and when a value is written twice
(the workload promises unique values), a read is judged against the writes of its value up
to its piece, not a later one, so it can count as stale where the whole history's latest
write of that value would hide it (write 1, write 2, read 1, write 1).
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import orjson

from chaos.checkers import CHECKERS, ORDER, conclude, evidence
from chaos.checkers._frame import register_facts, shaped
from chaos.checkers.base import Anomaly, CheckResult, check_safe
from chaos.checkers.dual_leaders import DUAL_LEADERS
from chaos.checkers.linearizable.checker import ALL_FS, DEFAULT_TIME_LIMIT
from chaos.checkers.perf import PERF, PerfParts
from chaos.checkers.shard_pool import PER_KEY, Plan, check_all, default_workers
from chaos.errors import BadInput
from chaos.history.faults import fault_windows
from chaos.history.leadership import leader_intervals, leader_overlaps
from chaos.history.spill import make_directory
from chaos.history.stream import PIECE_OPS, Doubt, Split, split_history

#: anomaly kind -> the word lost-writes uses in its "only the first N listed" warning
LOST_KINDS = {"lost-write": "lost", "divergent": "divergent", "unexpected": "unexpected",
              "stale-set-read": "stale"}


@dataclass
class Digest:
    """What the summary and results.json read of a history checked in shards."""

    source: str
    warnings: list[str]
    n_ops: int
    lines: int
    ops: list[dict[str, Any]] = field(default_factory=list)  # the lines anomalies cite


def analyze_path(path: str | os.PathLike[str], names: list[str] | None,
                 opts: Mapping[str, Any] | None = None, n_shards: int | None = None,
                 status: Callable[[str], None] | None = None,
                 workers: int | None = None,
                 piece_ops: int = PIECE_OPS,
                 check_workers: int | None = None) -> tuple[dict[str, Any], Digest]:
    """Check the JSONL history at `path` in shards; (run_checkers' outcome, Digest).
    `workers`: processes reading the file (chaos.history.ranges; None: one per core).
    A register or kv key is cut into pieces of about `piece_ops` ops (chaos.history.stream).
    `check_workers`: processes checking the shards (chaos.checkers.shard_pool; None: one
    per core for a big history).

    Raises Doubt when the history is for the in-memory path (see the module doc), BadInput
    for an unknown checker name.
    """
    opts = dict(opts or {})
    directory = make_directory()  # swept by the next analysis if this one is SIGKILLed
    try:
        split = split_history(path, directory, n_shards, workers, piece_ops=piece_ops,
                              cuttable=ALL_FS)
        return _analyze(split, names, opts, status or (lambda _: None), check_workers)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _analyze(split: Split, names: list[str] | None, opts: dict[str, Any],
             status: Callable[[str], None],
             check_workers: int | None = None) -> tuple[dict[str, Any], Digest]:
    if names:
        for name in names:
            if name not in CHECKERS:
                raise BadInput(f"unknown checker {name!r} (valid: {', '.join(CHECKERS)})")
        if "counter" in names:
            raise Doubt("counter sums over all keys")
    if {"add", "read"} <= split.client_fs:
        # the counter checker sums every key's adds: adds on one key and reads on another
        # (in other shards, or checked by other processes) are a counter history too
        raise Doubt("a counter's adds and reads: the counter checker sums over all keys")
    ctx = split.context_history()
    end = split.end_time
    windows = fault_windows(ctx, end)
    overlaps = [(ov.start, ov.end) for ov in leader_overlaps(leader_intervals(ctx))]
    th = evidence.Thresholds.from_opts(opts)
    facts = evidence.ClientFacts(tail_ns=int(th.failing_tail_s * evidence.NS_PER_S))
    perf = PerfParts()
    reg = register_facts(ctx.pairs)
    any_read_set = bool((ctx.pairs["f"] == "read-set").any())
    kv = bool(ctx.pairs["f"].isin(("get", "put", "append")).any())
    modelled = False
    parts: dict[str, list[CheckResult]] = {name: [] for name in PER_KEY}
    acks: list[dict[str, np.ndarray]] = []
    # a per-key checker needs its ops: without them anywhere it applies nowhere, skip it
    fs = split.client_fs | set(ctx.pairs["f"].tolist())
    wanted = {"lost-writes": "read-set" in fs, "stale-reads": bool(fs & set(ALL_FS)),
              "linearizable": bool(fs & set(ALL_FS))}
    plan = Plan(split=split, names=names, wanted=wanted, opts=opts, model=_model(split, opts),
                windows=windows, overlaps=overlaps, thresholds=th,
                lin_limit=float(opts.get("time_limit", DEFAULT_TIME_LIMIT)))
    if check_workers is None:
        check_workers = default_workers(split)
    for o in check_all(plan, check_workers, status):
        for name, r in o.results.items():
            parts[name].append(r)
        reg = (reg[0] or o.reg[0], reg[1] or o.reg[1], reg[2] or o.reg[2], reg[3] and o.reg[3])
        any_read_set |= o.read_set
        kv |= o.kv
        modelled |= o.modelled
        if o.facts is not None:
            facts.merge(o.facts)
        if o.perf is not None:
            perf.merge(o.perf)
        if o.acks is not None:
            acks.append(o.acks)
    applies = {
        "lost-writes": any_read_set,
        "stale-reads": shaped(reg),
        "linearizable": modelled and (kv or shaped(reg)),
        "dual-leaders": DUAL_LEADERS.applies(ctx),
        "perf": perf.ops > 0,
    }
    chosen = [n for n in ORDER if (n in names if names else applies.get(n, False))]
    results: dict[str, CheckResult] = {}
    cap = int(opts.get("max_anomalies", 1000))
    for name in chosen:
        if name in PER_KEY:
            results[name] = MERGE[name](parts[name], cap)
        elif name == "perf":
            results[name] = PERF.result(perf, windows)
        elif name == "dual-leaders":
            results[name] = check_safe(DUAL_LEADERS, split.context_history(acks), opts)
    outcome = conclude(ctx, results, opts, facts, end)
    digest = Digest(split.source, list(split.warnings), split.ops, split.lines)
    cited = {i for r in results.values() for a in r.anomalies[:50] for i in a.ops[:20]}
    if cited:
        digest.ops = find_ops(split.source, cited)
    return outcome, digest


def _model(split: Split, opts: Mapping[str, Any]) -> Any:
    """The linearizable model picked from the whole history's client fs (not a shard's)."""
    if opts.get("model") is not None:
        return opts["model"]
    from chaos.checkers.linearizable.models import pick_model
    fs = {f for f in split.client_fs if f in ALL_FS}
    picked = pick_model(fs)
    return picked.name if picked is not None else None


def _by_time(anomalies: list[Anomaly]) -> list[Anomaly]:
    return sorted(anomalies, key=lambda a: (a.time if a.time is not None else -1))


def _sum_stats(parts: list[CheckResult], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in parts:
        for k, v in r.stats.items():
            if k in skip:
                continue
            out[k] = out.get(k, 0) + v
    return out


def _unknown_part(parts: list[CheckResult]) -> CheckResult | None:
    """A shard whose checker crashed: its result stands for all (never a valid verdict)."""
    return next((r for r in parts if r.error is not None), None)


def merge_lost_writes(parts: list[CheckResult], cap: int) -> CheckResult:
    crashed = _unknown_part(parts)
    if crashed is not None:
        return crashed
    stats = _sum_stats(parts)
    anomalies: list[Anomaly] = []
    warnings: list[str] = []
    by_kind: dict[str, list[Anomaly]] = {k: [] for k in LOST_KINDS}
    for r in parts:
        for a in r.anomalies:
            by_kind[a.kind].append(a)
    for kind, word in LOST_KINDS.items():
        n = stats.get(word, 0)
        if n > cap:
            warnings.append(f"{n} {word} elements, only the first {cap} listed")
        anomalies += _by_time(by_kind[kind])[:cap]
    if not stats.get("reads"):
        warnings.append("no ok read-set: nothing can be judged lost")
    return CheckResult("lost-writes", not anomalies, anomalies=_by_time(anomalies),
                       stats=stats, warnings=warnings)


def merge_stale_reads(parts: list[CheckResult], cap: int) -> CheckResult:
    crashed = _unknown_part(parts)
    if crashed is not None:
        return crashed
    stats = _sum_stats(parts, skip=("lag_ms", "lags_ns"))
    lags = np.concatenate([np.asarray(r.stats.get("lags_ns", []), dtype=np.int64)
                           for r in parts]) if parts else np.zeros(0, dtype=np.int64)
    if len(lags):
        stats["lag_ms"] = {"p50": float(np.percentile(lags, 50)) / 1e6,
                           "max": float(lags.max()) / 1e6}
    warnings: list[str] = []
    unwritten = stats.get("reads_of_unwritten_values", 0) + stats.get("reads_of_failed_writes", 0)
    if unwritten:
        warnings.append(f"{unwritten} read(s) returned a value no successful or "
                        f"pending write produced (left to the linearizable checker)")
    if stats.get("stale", 0) > cap:
        warnings.append(f"{stats['stale']} stale reads, only the first {cap} listed")
    anomalies = _by_time([a for r in parts for a in r.anomalies])[:cap]
    return CheckResult("stale-reads", not anomalies, anomalies=anomalies, stats=stats,
                       warnings=warnings)


def merge_linearizable(parts: list[CheckResult], cap: int) -> CheckResult:
    crashed = _unknown_part(parts)
    if crashed is not None:
        return crashed
    stats: dict[str, Any] = {}
    for r in parts:
        for k, v in r.stats.items():
            if k in ("model", "fail_mode"):
                stats.setdefault(k, v)
            elif k in ("undecided", "skipped_keys"):
                stats[k] = stats.get(k, []) + list(v)
            elif k == "peak_configs":
                stats[k] = max(stats.get(k, 0), v)
            else:
                stats[k] = stats.get(k, 0) + v
    if "seconds" in stats:
        stats["seconds"] = round(stats["seconds"], 4)
    verdicts = [r.valid for r in parts]
    valid: Any = (False if any(v is False for v in verdicts) else
                  "unknown" if stats.get("undecided") or stats.get("skipped_keys") else True)
    warnings = [w for r in parts for w in r.warnings if w.startswith("key ")]
    skipped = stats.get("skipped_keys") or []
    if skipped and valid is False:
        warnings.append(f"{len(skipped)} key(s) not finished: an invalid key ended the check")
    elif skipped:
        warnings.append(f"{len(skipped)} key(s) not checked: time limit reached")
    anomalies = [a for r in parts for a in r.anomalies]
    reasons = [x for r in parts for x in r.reasons]
    return CheckResult("linearizable", valid, anomalies=anomalies, stats=stats,
                       warnings=warnings, reasons=reasons)


MERGE: dict[str, Callable[[list[CheckResult], int], CheckResult]] = {
    "lost-writes": merge_lost_writes, "stale-reads": merge_stale_reads,
    "linearizable": merge_linearizable,
}

_INDEX = re.compile(rb'"index":\s*(-?\d+)')


def find_ops(path: str, wanted: set[int]) -> list[dict[str, Any]]:
    """The lines of `path` whose "index" is in `wanted` (the few an explanation cites), found
    by one streaming scan that parses only the candidate lines."""
    found: list[dict[str, Any]] = []
    rest = set(wanted)
    with open(Path(path), "rb") as fh:
        for line in fh:
            m = _INDEX.search(line)
            if m is None or int(m.group(1)) not in rest:
                continue
            try:
                op = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(op, dict) and op.get("index") in rest:
                found.append(op)
                rest.discard(op["index"])
                if not rest:
                    break
    return found
