"""Hypothesis generators of histories, and a small builder for hand-written ones.

Reusable by every checker's tests:

- `HistoryBuilder`: write ops as (process, f, start, end, ...) and get the JSONL-shaped op
  dicts (invoke + completion lines, ordered by time, indexed) or a `History`.
- `register_histories()`, `set_histories()`, `monitor_histories()`: histories generated from
  a sequential model with random concurrency, so they are correct by construction (every op
  takes effect at a random point inside its [invoke, complete] interval, and reads return the
  model's state at their point). `inject=` asks for the same kind of history with exactly one
  injected anomaly of a known kind:
    register: inject="stale-read"        a read returns a value surely overwritten
    set:      inject="lost-write"        an acknowledged add is dropped from the final reads
    monitor:  inject="same-term-leaders" a follower claims leadership in the current term
Each strategy yields a `Generated` (ops, what was injected, where).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from chaos.history.model import History

MS = 1_000_000  # generated times are in whole milliseconds, as ns


class HistoryBuilder:
    """Builds op lines by operation: `op(...)` adds an invoke and (unless end is None) a
    completion; `ops()` returns them ordered by time with `index` assigned."""

    def __init__(self) -> None:
        self._events: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = 0

    def _add(self, t: int, line: dict[str, Any]) -> None:
        self._events.append((t, self._seq, line))
        self._seq += 1

    def op(self, process: Any, f: str, start: int, end: int | None = None, *,
           value: Any = None, result: Any = None, type: str = "ok", key: Any = None,
           node: Any = None, meta: dict[str, Any] | None = None, final: bool = False,
           invoke_node: Any = None) -> "HistoryBuilder":
        """One operation. `value` goes on the invoke (and on the completion unless `result` is
        given: reads put what they read in `result`). Times are in ns."""
        inv: dict[str, Any] = {"process": process, "type": "invoke", "f": f, "value": value,
                               "time": start}
        if key is not None:
            inv["key"] = key
        if invoke_node is not None:
            inv["node"] = invoke_node
        if final:
            inv["final"] = True
        self._add(start, inv)
        if end is not None:
            done: dict[str, Any] = {"process": process, "type": type, "f": f,
                                    "value": result if result is not None or f in (
                                        "read", "read-set", "status") else value,
                                    "time": end}
            if key is not None:
                done["key"] = key
            if node is not None:
                done["node"] = node
            if meta is not None:
                done["meta"] = meta
            if final:
                done["final"] = True
            self._add(end, done)
        return self

    def ops(self) -> list[dict[str, Any]]:
        out = []
        for i, (_, _, line) in enumerate(sorted(self._events, key=lambda e: (e[0], e[1]))):
            out.append({"index": i, **line})
        return out

    def history(self) -> History:
        return History.from_ops(self.ops())


@dataclass
class Generated:
    """A generated history: its op lines, and what was injected (None: a correct history)."""

    ops: list[dict[str, Any]]
    injected: str | None = None
    where: dict[str, Any] = field(default_factory=dict)

    def history(self) -> History:
        return History.from_ops(self.ops)


@dataclass
class _Op:
    """An operation of the model run, before it becomes lines."""

    process: int
    f: str
    start: int
    end: int
    point: int            # when it takes effect (inside [start, end])
    key: Any = None
    value: Any = None
    result: Any = None
    type: str = "ok"
    happens: bool = True  # for info ops: did it take effect?
    node: str | None = None
    final: bool = False


def _schedule(draw: st.DrawFn, n_procs: int, n_ops: int) -> list[tuple[int, int, int, int]]:
    """(logical process, start, end, effect point) for n_ops ops spread over n_procs
    processes; each process's ops are sequential, ops of different processes overlap."""
    clocks = [draw(st.integers(0, 3)) * MS for _ in range(n_procs)]
    out = []
    for _ in range(n_ops):
        p = draw(st.integers(0, n_procs - 1))
        start = clocks[p] + draw(st.integers(0, 3)) * MS
        end = start + draw(st.integers(1, 6)) * MS
        point = draw(st.integers(start, end))
        clocks[p] = end + MS
        out.append((p, start, end, point))
    return out


def _lines(ops: list[_Op]) -> list[dict[str, Any]]:
    """Op lines from model ops; after an info op the logical process continues under a new
    process id (DESIGN §4)."""
    b = HistoryBuilder()
    offset: dict[int, int] = {}
    for op in sorted(ops, key=lambda o: o.start):
        pid = op.process + 100 * offset.get(op.process, 0)
        result = op.result if op.type == "ok" else None
        b.op(pid, op.f, op.start, op.end, value=op.value, result=result, type=op.type,
             key=op.key, node=op.node, final=op.final)
        if op.type == "info":
            offset[op.process] = offset.get(op.process, 0) + 1
    return b.ops()


# -- register -----------------------------------------------------------------------------------

@st.composite
def register_histories(draw: st.DrawFn, inject: str | None = None, max_ops: int = 30,
                       keys: tuple[str, ...] = ("k1", "k2")) -> Generated:
    """Register histories (read / write / cas, unique write values) from a sequential model."""
    n_procs = draw(st.integers(1, 4))
    n_ops = draw(st.integers(1, max_ops))
    ops: list[_Op] = []
    counter = 0
    for p, start, end, point in _schedule(draw, n_procs, n_ops):
        f = draw(st.sampled_from(["read", "read", "write", "write", "cas"]))
        key = draw(st.sampled_from(keys))
        typ = draw(st.sampled_from(["ok"] * 8 + ["info", "fail"]))
        op = _Op(p, f, start, end, point, key=key, type=typ, node="n1")
        op.value, counter = draw_register_value(draw, f, counter)
        op.happens = typ == "ok" or (typ == "info" and f != "read" and draw(st.booleans()))
        ops.append(op)
    run_register_model(ops)
    gen = Generated(_lines(ops))
    if inject == "stale-read":
        _inject_stale(draw, gen, ops)
    return gen


def draw_register_value(draw: st.DrawFn, f: str, counter: int) -> tuple[Any, int]:
    """(the op's invoke value, the new counter) of a generated register op: a write writes
    the next unique value, a cas expects one of the last few values (or the initial None)
    and writes the next; a read has no value."""
    if f == "write":
        return counter + 1, counter + 1
    if f == "cas":
        expected = draw(st.sampled_from([None, *range(max(1, counter - 2), counter + 1)]))
        return [expected, counter + 1], counter + 1
    return None, counter


def run_register_model(ops: list[Any], failed_compare: str | None = None) -> None:
    """Run the sequential register model at each op's effect point (`point`), in place:
    a read gets the value then, a write or cas that `happens` sets it; an ok cas whose
    expected value is not the current one becomes a fail that did not happen (its `error`
    set to `failed_compare` when given, as a target that tags observed compares does).
    The one model run of the generated register histories (here and the bounded-path
    oracle tests)."""
    state: dict[Any, Any] = {}
    for op in sorted(ops, key=lambda o: o.point):
        cur = state.get(op.key)
        if op.f == "read":
            op.result = cur
        elif op.f == "write" and op.happens:
            state[op.key] = op.value
        elif op.f == "cas":
            if op.value[0] == cur:
                if op.happens:
                    state[op.key] = op.value[1]
            elif op.type == "ok":
                op.type = "fail"  # the model says the cas did not apply
                if failed_compare is not None:
                    op.error = failed_compare
            if op.type == "fail":
                op.happens = False


def _inject_stale(draw: st.DrawFn, gen: Generated, ops: list[_Op]) -> None:
    """Make one ok read return a value that some completed write surely replaced."""
    writes = [o for o in ops if o.type == "ok" and o.f in ("write", "cas")]
    reads = [o for o in ops if o.type == "ok" and o.f == "read"]
    cands: list[tuple[_Op, Any]] = []
    for r in reads:
        for w2 in writes:
            if w2.key != r.key or w2.end >= r.start:
                continue
            cands.append((r, None))  # the initial value, surely replaced by w2
            for w in writes:
                if w.key == r.key and w.end < w2.start:
                    cands.append((r, w.value if w.f == "write" else w.value[1]))
    if not cands:  # append a sequential tail that makes one: write a, write b, read a
        t = max((o.end for o in ops), default=0) + 10 * MS
        p = max(o.process for o in ops) + 1 if ops else 0
        b = HistoryBuilder()
        b.op(500 + p, "write", t, t + MS, value="inj-a", key="k1", node="n1")
        b.op(500 + p, "write", t + 2 * MS, t + 3 * MS, value="inj-b", key="k1", node="n1")
        b.op(500 + p, "read", t + 4 * MS, t + 5 * MS, result="inj-a", key="k1", node="n2")
        tail = b.ops()
        base = len(gen.ops)
        gen.ops.extend({**line, "index": base + i} for i, line in enumerate(tail))
        gen.injected, gen.where = "stale-read", {"read_index": base + 4, "value": "inj-a"}
        return
    r, value = cands[draw(st.integers(0, len(cands) - 1))]
    r.result = value
    gen.ops = _lines(ops)
    idx = next(line["index"] for line in gen.ops
               if line["type"] == "ok" and line["f"] == "read" and line["time"] == r.end
               and line["value"] == value and line.get("key") == r.key)
    gen.injected, gen.where = "stale-read", {"read_index": idx, "value": value}


# -- set ----------------------------------------------------------------------------------------

@st.composite
def set_histories(draw: st.DrawFn, inject: str | None = None, max_ops: int = 30,
                  final_reads: int | None = None, rotate: bool = False) -> Generated:
    """Set histories (add / read-set, then final reads on every node) from a sequential model.

    rotate: the elements go to keys that rotate as the set workload's do (each key takes
    1-4 adds, then the next one; a read reads the key being filled or an older one), and
    the final reads read every key on every node. Otherwise one set without a key."""
    n_procs = draw(st.integers(1, 4))
    n_ops = draw(st.integers(1, max_ops))
    per_key = draw(st.integers(1, 4)) if rotate else 0
    ops: list[_Op] = []
    counter = 0

    def key_of(n: int) -> str | None:
        return f"s{n // per_key}" if rotate else None

    for p, start, end, point in _schedule(draw, n_procs, n_ops):
        if draw(st.integers(0, 3)) == 0:
            back = draw(st.integers(0, 1)) * per_key  # sometimes the previous key
            ops.append(_Op(p, "read-set", start, end, point, key=key_of(max(0, counter - back)),
                           type=draw(st.sampled_from(["ok"] * 6 + ["info", "fail"])),
                           node=draw(st.sampled_from(["n1", "n2", "n3"]))))
        else:
            counter += 1
            typ = draw(st.sampled_from(["ok"] * 6 + ["info", "fail"]))
            ops.append(_Op(p, "add", start, end, point, value=counter, type=typ,
                           key=key_of(counter - 1), node="n1",
                           happens=typ == "ok" or (typ == "info" and draw(st.booleans()))))
    n_final = final_reads if final_reads is not None else draw(st.integers(0, 3))
    keys = list(dict.fromkeys(o.key for o in ops)) or [key_of(0)]
    t = max((o.end for o in ops), default=0) + 20 * MS
    for j, key in enumerate(keys):
        for i in range(n_final):
            s = t + (j * n_final + i) * MS
            ops.append(_Op(1000 + j * n_final + i, "read-set", s, s + 3 * MS, s + MS, key=key,
                           node=f"n{i + 1}", final=True))
    state: dict[Any, set[Any]] = {}
    for op in sorted(ops, key=lambda o: o.point):
        if op.f == "add" and op.happens:
            state.setdefault(op.key, set()).add(op.value)
        elif op.f == "read-set":
            op.result = sorted(state.get(op.key, set()))
    gen = Generated(_lines(ops))
    if inject == "lost-write":
        acked = [o for o in ops if o.f == "add" and o.type == "ok"]
        finals = [o for o in ops if o.final]
        if not acked or not finals:  # make sure there is an acked add and a final read
            t = max((o.end for o in ops), default=0) + 50 * MS
            key = key_of(0)
            extra = _Op(900, "add", t, t + MS, t, value="inj", key=key, node="n1")
            ops.append(extra)
            acked.append(extra)
            if not finals:  # one on every key (a key without finals is judged otherwise)
                for j, k in enumerate(keys):
                    s = t + (10 + j) * MS
                    held = state.get(k, set()) | ({"inj"} if k == key else set())
                    fin = _Op(901 + j, "read-set", s, s + MS, s, node="n1", key=k,
                              final=True, result=sorted(held, key=str))
                    ops.append(fin)
                    finals.append(fin)
            else:
                for fin in finals:
                    fin.start, fin.end = t + 10 * MS + fin.start, t + 10 * MS + fin.end
                    if fin.key == key:
                        fin.result = sorted([*fin.result, "inj"], key=str)
        victim = acked[draw(st.integers(0, len(acked) - 1))]
        for fin in finals:
            if fin.key == victim.key:
                fin.result = [e for e in fin.result if e != victim.value]
        gen.ops = _lines(ops)
        gen.injected, gen.where = "lost-write", {"element": victim.value, "key": victim.key}
    return gen


# -- monitor ------------------------------------------------------------------------------------

@st.composite
def monitor_histories(draw: st.DrawFn, inject: str | None = None, max_terms: int = 5,
                      nodes: tuple[str, ...] = ("n1", "n2", "n3")) -> Generated:
    """Monitor observations with one leader per term, plus writes acknowledged by the leader.

    Leadership changes at term boundaries; a deposed leader may keep saying it leads (in its
    old term) for a while (legal: a warning, not an anomaly), and some polls get no answer.
    Client writes run entirely inside their leader's term, acknowledged by it.
    """
    n_terms = draw(st.integers(1, max_terms))
    bounds = [0]
    leaders = []
    for _ in range(n_terms):
        bounds.append(bounds[-1] + draw(st.integers(10, 40)) * MS)
        choices = [n for n in nodes if not leaders or n != leaders[-1]] or list(nodes)
        leaders.append(draw(st.sampled_from(choices)))
    lag = [draw(st.integers(0, 15)) * MS for _ in range(n_terms)]  # old leader's late news
    b = HistoryBuilder()
    t = 0
    i = 0
    silent = draw(st.sets(st.integers(0, bounds[-1] // (3 * MS)), max_size=3))  # no answer
    while t + 2 * MS < bounds[-1]:
        node = nodes[i % len(nodes)]
        i += 1
        at = t + MS  # the node answers at this time
        term = next(k for k in range(n_terms) if bounds[k] <= at < bounds[k + 1])
        prev_lagging = (term > 0 and node == leaders[term - 1] and node != leaders[term]
                        and at < bounds[term] + lag[term])
        if i - 1 in silent:
            b.op("monitor", "status", t, t + 2 * MS, type="info", invoke_node=node)
        elif node == leaders[term]:
            b.op("monitor", "status", t, t + 2 * MS, invoke_node=node, node=node,
                 result={"role": "leader", "term": term + 1, "leader": node})
        elif prev_lagging:
            b.op("monitor", "status", t, t + 2 * MS, invoke_node=node, node=node,
                 result={"role": "leader", "term": term, "leader": node})
        else:
            b.op("monitor", "status", t, t + 2 * MS, invoke_node=node, node=node,
                 result={"role": "follower", "term": term + 1, "leader": leaders[term]})
        t += 3 * MS
    gen = Generated(b.ops())
    # client writes go in a second pass so each logical process stays sequential
    procs_free: dict[int, int] = {}
    cb = HistoryBuilder()
    for k in range(n_terms):
        for j in range(draw(st.integers(0, 3))):
            lo = bounds[k] // MS
            hi = bounds[k + 1] // MS - 3
            s = draw(st.integers(lo, max(lo, hi))) * MS
            p = next(p for p in range(100) if procs_free.get(p, -1) < s)
            procs_free[p] = s + 2 * MS
            cb.op(p, "write", s, s + 2 * MS, value=f"v{k}-{j}", key="k1", node=leaders[k],
                  meta={"term": k + 1})
    merged = HistoryBuilder()
    merged._events = [(line["time"], n, {k: v for k, v in line.items() if k != "index"})
                      for n, line in enumerate(gen.ops + cb.ops())]
    gen = Generated(merged.ops())
    if inject == "same-term-leaders":
        status = [line for line in gen.ops if line["process"] == "monitor"
                  and line["type"] == "ok"]
        led = {(line["value"]["term"], line["node"]) for line in status
               if line["value"]["role"] == "leader"}
        followers = [line for line in status if line["value"]["role"] == "follower"
                     and any(t == line["value"]["term"] and n != line["node"] for t, n in led)]
        if followers:
            line = followers[draw(st.integers(0, len(followers) - 1))]
        else:  # the term's leader was never seen leading: add it, then a follower to turn
            last = max(x["time"] for x in gen.ops) + MS
            other = next(n for n in nodes if n != leaders[-1])
            extra = (HistoryBuilder()
                     .op("monitor", "status", last, last + MS, invoke_node=leaders[-1],
                         node=leaders[-1], result={"role": "leader", "term": n_terms,
                                                   "leader": leaders[-1]})
                     .op("monitor", "status", last + 2 * MS, last + 3 * MS, invoke_node=other,
                         node=other, result={"role": "follower", "term": n_terms,
                                             "leader": leaders[-1]})).ops()
            base = len(gen.ops)
            gen.ops.extend({**x, "index": base + n} for n, x in enumerate(extra))
            line = gen.ops[-1]
        line["value"] = {**line["value"], "role": "leader"}
        gen.injected = "same-term-leaders"
        gen.where = {"node": line["node"], "term": line["value"]["term"],
                     "index": line["index"]}
    return gen
