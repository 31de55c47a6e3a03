"""Check a history of any length in bounded memory: read it in shards by key, run the same
checkers on each shard, merge their results.

`chaos.history.stream` reads the history a block at a time and spills its operations to
shards, every op of a key in one shard, the non-client ops (faults, monitor, controller) in a
small in-memory context. Then, one shard in memory at a time:

- the per-key checkers (lost writes, stale reads, linearizability: each judges a key from
  that key's ops alone) run on the shard as they would on the whole history; their results
  are merged (counts add up, anomalies are listed by time);
- perf, the evidence rules and dual-leaders' split-brain acknowledgements take mergeable
  parts of each shard (`PerfParts`, `evidence.ClientFacts`, the ok writes inside a
  leadership overlap);
- dual leaders, the explanations and the monitor/fault rules read the context.

So there is one implementation of every rule; this module only splits and merges. Peak
memory is one shard's History plus what a checker keeps by definition (latencies, the merged
counts), not the history's length. The counter checker sums over all keys, so a counter
history is read in memory (`Doubt`), as is anything the streaming reader doubts.

Known differences from an in-memory run, none in a verdict or an anomaly count: past
opts["max_anomalies"] anomalies of a kind the listed sample may differ; and when the
linearizable search finds an invalid key it stops, so which invalid key is shown and which
other keys it had finished by then (keys_valid, skipped_keys, steps, peak_configs) depend on
the order keys are searched in: one search interleaves all keys, here shard after shard.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import orjson

from chaos.checkers import CHECKERS, ORDER, conclude, evidence
from chaos.checkers._frame import hashable, register_facts, shaped
from chaos.checkers.carry import WriteCarry
from chaos.checkers.base import Anomaly, CheckResult, check_safe
from chaos.checkers.dual_leaders import DUAL_LEADERS, WRITE_FS
from chaos.checkers.linearizable.checker import ALL_FS, DEFAULT_TIME_LIMIT
from chaos.checkers.perf import PERF, PerfParts
from chaos.errors import BadInput
from chaos.history.faults import fault_windows
from chaos.history.leadership import leader_intervals, leader_overlaps
from chaos.history.model import COLUMNS, History, client_mask
from chaos.history.spill import make_directory
from chaos.history.stream import PIECE_OPS, Doubt, Split, split_history

PER_KEY = ("lost-writes", "stale-reads", "linearizable")
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
                 piece_ops: int = PIECE_OPS) -> tuple[dict[str, Any], Digest]:
    """Check the JSONL history at `path` in shards; (run_checkers' outcome, Digest).
    `workers`: processes reading the file (chaos.history.ranges; None: one per core).
    A register or kv key is cut into pieces of about `piece_ops` ops (chaos.history.stream).

    Raises Doubt when the history is for the in-memory path (see the module doc), BadInput
    for an unknown checker name.
    """
    opts = dict(opts or {})
    directory = make_directory()  # swept by the next analysis if this one is SIGKILLed
    try:
        split = split_history(path, directory, n_shards, workers, piece_ops=piece_ops,
                              cuttable=ALL_FS)
        return _analyze(split, names, opts, status or (lambda _: None))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _analyze(split: Split, names: list[str] | None, opts: dict[str, Any],
             status: Callable[[str], None]) -> tuple[dict[str, Any], Digest]:
    if names:
        for name in names:
            if name not in CHECKERS:
                raise BadInput(f"unknown checker {name!r} (valid: {', '.join(CHECKERS)})")
        if "counter" in names:
            raise Doubt("counter sums over all keys")
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
    lin_limit = float(opts.get("time_limit", DEFAULT_TIME_LIMIT))
    lin_spent = 0.0
    model = _model(split, opts)
    # a per-key checker needs its ops: without them anywhere it applies nowhere, skip it
    fs = split.client_fs | set(ctx.pairs["f"].tolist())
    wanted = {"lost-writes": "read-set" in fs, "stale-reads": bool(fs & set(ALL_FS)),
              "linearizable": bool(fs & set(ALL_FS))}
    lin_carry: dict[Any, Any] = {}
    writes = WriteCarry()
    for i in range(split.n_shards):
        if not split.shard_rows[i]:
            continue
        status(f"checking shard {i + 1}/{split.n_shards} ({split.shard_rows[i]} ops)...")
        shard = split.shard(i)
        pairs = shard.pairs
        piece = split.piece(i)
        cut_here: set[Any] = set()
        if split.cut_keys:
            cut_here = {hashable(k) for k in set(pairs["key"].tolist())} & set(split.cut_keys)
        going_on = {k for k in cut_here if split.continues(k, piece)}
        f = pairs["f"].to_numpy()
        if (f == "add").any() and (f == "read").any():
            raise Doubt("a counter's adds and reads: the counter checker sums over all keys")
        r = register_facts(pairs)
        reg = (reg[0] or r[0], reg[1] or r[1], reg[2] or r[2], reg[3] and r[3])
        any_read_set |= bool((f == "read-set").any())
        kv |= bool(np.isin(f, ("get", "put", "append")).any())
        modelled |= bool(np.isin(f, list(ALL_FS)).any())
        for name in PER_KEY:
            if (names and name not in names) or not (names or wanted[name]):
                continue
            shard_opts = dict(opts)
            if name == "stale-reads":
                shard_opts["keep_lags"] = True
                if cut_here:
                    parts[name].append(_stale_piece(shard, shard_opts, writes, cut_here))
                    continue
            if name == "linearizable":
                if split.cut_keys:
                    shard_opts.update(_lin_piece(split, piece, lin_carry))
                    shard_opts["piece_keys"] = cut_here
                if any(r.valid is False for r in parts[name]):
                    # an invalid key ends the search, as in one in-memory search
                    parts[name].append(_skipped(shard, shard_opts))
                    continue
                shard_opts["time_limit"] = max(lin_limit - lin_spent, 1e-3)
                if model is not None:
                    shard_opts["model"] = model
                t0 = time.perf_counter()
            parts[name].append(check_safe(CHECKERS[name], shard, shard_opts))
            if name == "linearizable":
                lin_spent += time.perf_counter() - t0
        writes.keep(shard, going_on)
        facts.merge(evidence.client_facts(pairs, th.failing_tail_s))
        perf.merge(PerfParts.of(pairs, windows))
        if overlaps:
            acks.append(_acks_in(pairs, overlaps))
        del shard, pairs
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


def _stale_piece(shard: History, opts: Mapping[str, Any], writes: WriteCarry,
                 keys: set[Any]) -> CheckResult:
    """Stale reads on a shard holding pieces of cut keys: with their earlier writes beside
    (chaos.checkers.carry), the carried rows not counted again."""
    both, n_writes, n_keys = writes.with_writes(shard, keys)
    r = check_safe(CHECKERS["stale-reads"], both, opts)
    if r.error is None:
        r.stats["writes"] = r.stats.get("writes", 0) - n_writes
        r.stats["keys"] = r.stats.get("keys", 0) - n_keys
    return r


def _lin_piece(split: Split, piece: int, carry: dict[Any, Any]) -> dict[str, Any]:
    """The linearizable options for a shard of piece `piece` (see its module doc)."""
    return {"carry": carry,
            "continues": lambda key: split.continues(key, piece),
            "later_observes": lambda key, value: split.later_observes(key, value, piece)}


def _model(split: Split, opts: Mapping[str, Any]) -> Any:
    """The linearizable model picked from the whole history's client fs (not a shard's)."""
    if opts.get("model") is not None:
        return opts["model"]
    from chaos.checkers.linearizable.models import pick_model
    fs = {f for f in split.client_fs if f in ALL_FS}
    picked = pick_model(fs)
    return picked.name if picked is not None else None


def _skipped(shard: History, opts: Mapping[str, Any]) -> CheckResult:
    """A shard the linearizable search did not get to (an earlier shard was invalid): its
    keys and ops counted as the one search counts them, its keys listed as skipped."""
    from chaos.checkers.linearizable.checker import _choose_model, _client_rows, _key_ops
    rows = _client_rows(shard)
    model = _choose_model({r[0] for r in rows}, opts.get("model"))
    groups, dropped = _key_ops(rows, model, opts.get("fail", "auto"))
    carry = opts.get("carry")
    carried_in = {k for k in groups if carry is not None and k in carry}
    if carry is not None:  # a key cut into pieces is counted once, in its first piece
        for key in groups:
            if opts["continues"](key):
                carry[key] = None
    return CheckResult("linearizable", "unknown", stats={
        "keys": len(groups) - len(carried_in), "ops": int(sum(len(g) for g in groups.values())),
        "dropped_ops": dropped, "skipped_keys": list(groups)})


def _acks_in(pairs: Any, overlaps: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The ok writes with a node that ran inside some leadership overlap (all dual-leaders'
    split-brain rule can count)."""
    f = pairs["f"].to_numpy()
    ok = np.isin(f, WRITE_FS) & (pairs["type"].to_numpy() == "ok")
    ok &= pairs["node"].notna().to_numpy() & client_mask(pairs["process"])
    inv = pairs["invoke_time"].to_numpy()
    cmp = pairs["complete_time"].to_numpy()
    inside = np.zeros(len(f), dtype=bool)
    for start, end in overlaps:
        inside |= ok & (inv >= start) & (cmp <= end)
    rows = np.flatnonzero(inside)
    return {c: pairs[c].to_numpy()[rows] for c in COLUMNS}


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
