"""Check the shards of a split history, on one process or on several at once.

chaos.checkers.sharded reads a history into shards (chaos.history.stream), then runs the
per-key checkers on each shard and takes the mergeable parts of the others. That work is
per shard, so it can run on every core: the shards are dealt out in *groups*, each group
checked by one process (forked: chaos.history.forked), its shards in index order, and each
shard's outcome (`ShardOutcome`: the per-key checkers' results and the mergeable parts) is
sent back to the parent, which merges them in shard order exactly as one process would.

What must stay in one process is what carries from shard to shard: the pieces of one long
key (the linearizable carry, the earlier writes stale reads need: chaos.checkers.carry).
Piece g of a key is in shard `base + g * base_shards` (chaos.history.stream), so a group is
all the shards of one base; groups are dealt to processes largest first.

Memory: each process holds one shard at a time (plus its keys' carries), so N processes
hold at most N shards at once. Time: the linearizable search's budget (opts["time_limit"])
is each process's (they run side by side: the wall time stays within it).

One difference from one process, none in a verdict or a count: an invalid key ends the
linearizable search of its process only; `demote_later_invalid` then keeps the first
invalid key by shard order (the one a single process would have stopped at) and lists the
others as not finished, so the anomaly count is that of one search.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from chaos.checkers import CHECKERS, evidence
from chaos.checkers._frame import Kinds, hashable, register_facts
from chaos.checkers.base import CheckResult, check_safe
from chaos.checkers.carry import WriteCarry
from chaos.checkers.dual_leaders import WRITE_FS
from chaos.checkers.linearizable.checker import ALL_FS
from chaos.checkers.linearizable.windows import REDO_EXACT
from chaos.checkers.perf import PerfParts
from chaos.history.faults import FaultWindow
from chaos.history.forked import can_fork, cores, map_forked
from chaos.history.model import COLUMNS, History, client_mask
from chaos.history.stream import Doubt, Split

PER_KEY = ("lost-writes", "stale-reads", "linearizable")
#: below this many client ops in all shards, one process checks them (forking costs more)
MIN_PARALLEL_OPS = 200_000


@dataclass
class Plan:
    """What every shard's check needs, the same in every process (set before forking)."""

    split: Split
    names: list[str] | None
    wanted: dict[str, bool]  # per-key checker -> whether its ops are anywhere
    opts: dict[str, Any]
    model: Any
    windows: list[FaultWindow]
    overlaps: list[tuple[int, int]]
    thresholds: evidence.Thresholds
    lin_limit: float


@dataclass
class ShardOutcome:
    """One shard's part of the analysis (picklable: sent from a checking process)."""

    index: int
    results: dict[str, CheckResult] = field(default_factory=dict)  # per-key checkers
    #: the client facts of this shard and the process's earlier ones, merged (on its last
    #: shard only: see check_shards)
    facts: evidence.ClientFacts | None = None
    perf: PerfParts | None = None
    acks: dict[str, np.ndarray] | None = None  # ok writes inside a leadership overlap
    reg: tuple[bool, bool, bool, bool] = (False, False, False, True)
    read_set: bool = False
    kv: bool = False
    modelled: bool = False


def default_workers(split: Split) -> int:
    """Processes to check `split`'s shards: one for a small history; else one per core, or
    more when that evens out the work. Groups are whole, so 5 equal groups on 2 processes
    go 3 : 2 and the wall time is 3 groups' work; on 3 processes (2 : 2 : 1, sharing the 2
    cores) it is 2.5. A process more only where it saves at least 5% of the wall time (each
    holds a shard in memory), and never more than two per core."""
    if not can_fork() or split.ops < MIN_PARALLEL_OPS:
        return 1
    sizes = [sum(split.shard_rows[i] for i in s) for s in groups(split).values()]
    n = cores()
    best = max(1, min(n, len(sizes)))
    best_wall = _wall(sizes, best, n)
    for workers in range(best + 1, min(len(sizes), 2 * n) + 1):
        wall = _wall(sizes, workers, n)
        if wall < 0.95 * best_wall:
            best, best_wall = workers, wall
    return best


def _wall(sizes: list[int], workers: int, n_cores: int) -> float:
    """The wall time (in ops checked) of `sizes`' groups dealt to `workers` processes sharing
    `n_cores` cores: the largest process's load, or all the work spread over the cores."""
    loads = _deal_sizes(sizes, workers)[1]
    return max(max(loads, default=0), sum(sizes) / max(1, min(n_cores, workers)))


def _deal_sizes(sizes: list[int], workers: int) -> tuple[list[list[int]], list[int]]:
    """Groups (by position in `sizes`) dealt to `workers` processes, the largest first to
    the least loaded; and each process's load."""
    load = [0] * workers
    out: list[list[int]] = [[] for _ in range(workers)]
    for g in sorted(range(len(sizes)), key=lambda g: (-sizes[g], g)):
        w = min(range(workers), key=lambda w: (load[w], w))
        out[w].append(g)
        load[w] += sizes[g]
    return out, load


def groups(split: Split) -> dict[int, list[int]]:
    """The non-empty shards by group (all pieces of a key in one: the module doc)."""
    out: dict[int, list[int]] = {}
    base = split.base_shards or split.n_shards
    for i in range(split.n_shards):
        if split.shard_rows[i]:
            out.setdefault(i % base, []).append(i)
    return out


def deal(split: Split, workers: int) -> list[list[int]]:
    """The shards each process checks (each list in index order): whole groups, the largest
    first to the least loaded process."""
    if workers <= 1:
        return [[i for i in range(split.n_shards) if split.shard_rows[i]]]
    by_group = [s for _, s in sorted(groups(split).items())]
    sizes = [sum(split.shard_rows[i] for i in s) for s in by_group]
    shares, _ = _deal_sizes(sizes, workers)
    return [sorted(i for g in share for i in by_group[g]) for share in shares if share]


def check_all(plan: Plan, workers: int,
              status: Callable[[str], None] = lambda _: None) -> list[ShardOutcome]:
    """Every non-empty shard's outcome, in shard order, checked by `workers` processes."""
    shares = deal(plan.split, workers)
    if len(shares) > 1:
        status(f"checking {plan.split.n_shards} shards on {len(shares)} processes...")
        got = map_forked([(check_shards, (plan, s)) for s in shares])
        return demote_later_invalid(sorted((o for part in got for o in part),
                                           key=lambda o: o.index))
    return check_shards(plan, shares[0] if shares else [], status)


def check_shards(plan: Plan, indices: list[int],
                 status: Callable[[str], None] = lambda _: None,
                 paths: bool = True, lin_spent: float = 0.0) -> list[ShardOutcome]:
    """Check shards `indices` in order, carrying what a long key's pieces need.

    `paths`: the linearizable search tries witness paths first (its `paths` option). A key
    whose later piece then fails from a path's carry (windows.REDO_EXACT) is no verdict:
    these shards are checked again from the first, with paths off (an invalid or unusual
    key costs its group twice; a valid one is decided by paths almost everywhere), within
    what is left of the search's time budget (`lin_spent`: seconds already spent)."""
    split, opts = plan.split, plan.opts
    lin_carry: dict[Any, Any] = {}
    writes = WriteCarry()
    lin_invalid = False
    out: list[ShardOutcome] = []
    facts: evidence.ClientFacts | None = None
    for i in indices:
        status(f"checking shard {i + 1}/{split.n_shards} ({split.shard_rows[i]} ops)...")
        shard = split.shard(i)
        pairs = shard.pairs
        piece = split.piece(i)
        cut_here: set[Any] = set()
        if split.cut_keys:
            cut_here = {hashable(k) for k in set(pairs["key"].tolist())} & set(split.cut_keys)
        going_on = {k for k in cut_here if split.continues(k, piece)}
        kinds = Kinds(pairs)  # f and type as codes, for every part below
        fs = kinds.fs
        if {"add", "read"} <= fs:
            raise Doubt("a counter's adds and reads: the counter checker sums over all keys")
        o = ShardOutcome(i, reg=register_facts(pairs, kinds), read_set="read-set" in fs,
                         kv=bool(fs & {"get", "put", "append"}), modelled=bool(fs & ALL_FS))
        for name in PER_KEY:
            if (plan.names and name not in plan.names) or not (plan.names or plan.wanted[name]):
                continue
            shard_opts = dict(opts)
            if name == "stale-reads":
                shard_opts["keep_lags"] = True
                if cut_here:
                    o.results[name] = _stale_piece(shard, shard_opts, writes, cut_here)
                    continue
            if name == "linearizable":
                if split.cut_keys:
                    shard_opts.update(_lin_piece(split, piece, lin_carry,
                                                 str(opts.get("fail", "auto"))))
                    shard_opts["piece_keys"] = cut_here
                if lin_invalid:
                    # an invalid key ends the search, as in one in-memory search
                    o.results[name] = _skipped(shard, shard_opts)
                    continue
                shard_opts["time_limit"] = max(plan.lin_limit - lin_spent, 1e-3)
                if plan.model is not None:
                    shard_opts["model"] = plan.model
                shard_opts["paths"] = paths and bool(opts.get("paths", True))
                t0 = time.perf_counter()
            o.results[name] = check_safe(CHECKERS[name], shard, shard_opts)
            if name == "linearizable":
                lin_spent += time.perf_counter() - t0
                lin_invalid = o.results[name].valid is False
                if paths and any(u.get("reason") == REDO_EXACT
                                 for u in o.results[name].stats.get("undecided", ())):
                    status("a key failed from a witness path's carry: its shards again, "
                           "searched exactly...")
                    return check_shards(plan, indices, status, paths=False,
                                        lin_spent=lin_spent)
        writes.keep(shard, going_on)
        # merged as they come: a shard's facts keep its ops of the last failing_tail_s
        # before its own last op (~7% of a 70 s piece's), which the merge with a later
        # shard's drops; kept per shard until the end, they grew with the history (30M
        # register lines: the parent's peak 766 -> 627 MB, each checking process's ~35 MB)
        shard_facts = evidence.client_facts(pairs, plan.thresholds.failing_tail_s, kinds)
        if facts is None:
            facts = shard_facts
        else:
            facts.merge(shard_facts)
        o.perf = PerfParts.of(pairs, plan.windows, kinds)
        if plan.overlaps:
            o.acks = _acks_in(pairs, plan.overlaps, kinds)
        out.append(o)
        del shard, pairs
    if out:
        out[-1].facts = facts
    return out


def demote_later_invalid(outcomes: list[ShardOutcome]) -> list[ShardOutcome]:
    """Keep the first invalid linearizable shard (by index) as the one invalid key; a later
    one (its process did not know) becomes "not finished", as one search would leave it."""
    first = True
    for o in outcomes:
        r = o.results.get("linearizable")
        if r is None or r.valid is not False:
            continue
        if first:
            first = False
            continue
        keys = [a.key for a in r.anomalies]
        stats = dict(r.stats, keys_invalid=0,
                     skipped_keys=list(r.stats.get("skipped_keys", [])) + keys)
        o.results["linearizable"] = CheckResult("linearizable", "unknown", stats=stats,
                                                warnings=[w for w in r.warnings
                                                          if w.startswith("key ")])
    return outcomes


def _stale_piece(shard: History, opts: dict[str, Any], writes: WriteCarry,
                 keys: set[Any]) -> CheckResult:
    """Stale reads on a shard holding pieces of cut keys: with their earlier writes beside
    (chaos.checkers.carry), the carried rows not counted again."""
    both, n_writes, n_keys = writes.with_writes(shard, keys)
    r = check_safe(CHECKERS["stale-reads"], both, opts)
    if r.error is None:
        r.stats["writes"] = r.stats.get("writes", 0) - n_writes
        r.stats["keys"] = r.stats.get("keys", 0) - n_keys
    return r


def _lin_piece(split: Split, piece: int, carry: dict[Any, Any],
               fail: str) -> dict[str, Any]:
    """The linearizable options for a shard of piece `piece` (see the checker's doc); `fail`:
    the checker's fail mode (which failed cas of a later piece observe)."""
    return {"carry": carry,
            "continues": lambda key: split.continues(key, piece),
            "later_observes": lambda key, value: split.later_observes(key, value, piece,
                                                                      fail)}


def _skipped(shard: History, opts: dict[str, Any]) -> CheckResult:
    """A shard the linearizable search did not get to (an earlier shard was invalid): its
    keys and ops counted as the one search counts them, its keys listed as skipped."""
    from chaos.checkers.linearizable.checker import _choose_model, _client_rows, _key_ops
    rows = _client_rows(shard)
    model = _choose_model(rows.fs(), opts.get("model"))
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


def _acks_in(pairs: Any, overlaps: list[tuple[int, int]],
             kinds: Kinds) -> dict[str, np.ndarray]:
    """The ok writes with a node that ran inside some leadership overlap (all dual-leaders'
    split-brain rule can count)."""
    ok = kinds.f(*WRITE_FS) & kinds.type("ok")
    ok &= pairs["node"].notna().to_numpy() & client_mask(pairs["process"])
    inv = pairs["invoke_time"].to_numpy()
    cmp = pairs["complete_time"].to_numpy()
    inside = np.zeros(len(ok), dtype=bool)
    for start, end in overlaps:
        inside |= ok & (inv >= start) & (cmp <= end)
    rows = np.flatnonzero(inside)
    return {c: pairs[c].to_numpy()[rows] for c in COLUMNS}
