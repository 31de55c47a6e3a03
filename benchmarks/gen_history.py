"""Generate a large, realistic history.jsonl, streamed to disk (for the analysis benchmarks).

    python benchmarks/gen_history.py --workload set --lines 10000000 --out /tmp/set-10m.jsonl
    python benchmarks/gen_history.py --workload register --lines 10000000 --out /tmp/reg.jsonl

What it holds, like a `chaos run --rate 0 --concurrency 16 --nemesis partition` history:
`--concurrency` client processes with overlapping ops (invoke, later its completion, other
processes' lines in between), ~1% of completions "info" (the process is then retired and a
new process id takes its slot), ~2% "fail"; a partition fault every 10 s of simulated time
(start, then stop 5 s later); a monitor polling the 3 nodes every second (status ops:
a leader in a term, followers); and at the end, for the set workload, one final read-set
per key per node. Simulated time advances ~70 us per line (about 14k lines/s).

set: elements `process * 1_000_000 + n` added to rotating keys as workloads/set.py does
(each slot's n-th add goes to key s{n // quota}, quota = adds_per_key // concurrency), reads
(10%) of the slot's current key return the elements acknowledged there so far.
register: read / write / cas (0.5 / 0.3 / 0.2) over `--keys` keys, unique write values, each
op taking effect at its completion (so the history is linearizable and has no stale read).

The history is valid by construction unless `--lose N` drops N acknowledged elements from
the final reads (set): the checker must then find exactly N lost writes.
Memory: the generator keeps the elements per key (the final reads need them), not the lines.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import orjson

NODES = ("n1", "n2", "n3")


class Gen:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.rnd = random.Random(args.seed)
        self.fh = open(args.out, "wb")
        self.buf: list[bytes] = []
        self.index = 0
        self.time = 0
        self.conc = args.concurrency
        self.procs = list(range(self.conc))
        self.next_proc = self.conc
        self.open: dict[int, dict] = {}   # slot -> invoke op
        self.adds = [0] * self.conc       # per slot: adds so far (key rotation)
        self.counter: dict[int, int] = {}  # per process: elements added
        self.quota = max(1, args.adds_per_key // self.conc)
        self.acked: dict[str, list[int]] = {}
        self.keys_used: list[str] = []
        self.reg: dict[str, int | None] = {f"k{i}": None for i in range(args.keys)}
        self.value = 0
        self.next_monitor = 0
        self.next_fault = 10_000_000_000
        self.partitioned = False
        self.term = 1
        self.leader = "n1"

    def emit(self, op: dict) -> None:
        op["index"] = self.index
        op["time"] = self.time
        self.index += 1
        self.buf.append(orjson.dumps(op))
        if len(self.buf) >= 65536:
            self.flush()

    def flush(self) -> None:
        self.fh.write(b"\n".join(self.buf) + b"\n")
        self.buf.clear()

    def tick(self) -> None:
        self.time += self.rnd.randint(20_000, 120_000)

    def background(self) -> None:
        if self.time >= self.next_monitor:
            self.next_monitor += 1_000_000_000
            for node in NODES:
                self.emit({"process": "monitor", "type": "invoke", "f": "status",
                           "value": None, "node": node})
                self.tick()
                role = "leader" if node == self.leader else "follower"
                self.emit({"process": "monitor", "type": "ok", "f": "status", "node": node,
                           "value": {"role": role, "term": self.term, "leader": self.leader}})
        if self.time >= self.next_fault:
            if not self.partitioned:
                v = {"partition": [["n3"], ["n1", "n2"]]}
                self.emit({"process": "nemesis", "type": "invoke", "f": "start-partition",
                           "value": v})
                self.emit({"process": "nemesis", "type": "ok", "f": "start-partition",
                           "value": v})
                self.next_fault += 5_000_000_000
            else:
                self.emit({"process": "nemesis", "type": "invoke", "f": "stop-partition",
                           "value": None})
                self.emit({"process": "nemesis", "type": "ok", "f": "stop-partition",
                           "value": None})
                self.next_fault += 5_000_000_000
            self.partitioned = not self.partitioned

    def invoke(self, slot: int) -> None:
        p = self.procs[slot]
        node = self.rnd.choice(NODES)
        if self.a.workload == "set":
            key = f"s{self.adds[slot] // self.quota}"
            if self.rnd.random() < 0.1:
                op = {"f": "read-set", "key": key, "value": None}
            else:
                n = self.counter.get(p, 0)
                self.counter[p] = n + 1
                self.adds[slot] += 1
                op = {"f": "add", "key": key, "value": p * 1_000_000 + n}
                if key not in self.acked:
                    self.acked[key] = []
                    self.keys_used.append(key)
        else:
            key = f"k{self.rnd.randrange(self.a.keys)}"
            r = self.rnd.random()
            if r < 0.5:
                op = {"f": "read", "key": key, "value": None}
            elif r < 0.8:
                self.value += 1
                op = {"f": "write", "key": key, "value": self.value}
            else:
                self.value += 1
                op = {"f": "cas", "key": key,
                      "value": [self.reg[key] if self.rnd.random() < 0.5 else self.value - 2,
                                self.value]}
        op.update(process=p, type="invoke", node=node)
        self.open[slot] = op
        self.emit(dict(op))

    def complete(self, slot: int) -> None:
        inv = self.open.pop(slot)
        r = self.rnd.random()
        typ = "info" if r < 0.01 else "fail" if r < 0.03 else "ok"
        f, key = inv["f"], inv["key"]
        out = {"process": inv["process"], "type": typ, "f": f, "key": key,
               "value": inv["value"], "node": inv["node"]}
        if f == "add":
            if typ == "ok" or (typ == "info" and r < 0.005):
                self.acked[key].append(inv["value"])
        elif f == "read-set":
            out["value"] = sorted(self.acked.get(key, [])) if typ == "ok" else None
        elif f == "read":
            out["value"] = self.reg[key] if typ == "ok" else None
        elif f == "write":
            if typ != "fail":
                self.reg[key] = inv["value"]
        elif f == "cas":
            applies = self.reg[key] == inv["value"][0]
            if typ == "ok" and not applies:
                typ = out["type"] = "fail"
            if typ != "fail" and applies:
                self.reg[key] = inv["value"][1]
        if typ == "ok":
            out["meta"] = {"term": self.term}
        self.emit(out)
        if typ == "info":
            self.procs[slot] = self.next_proc
            self.next_proc += 1

    def run(self) -> None:
        target = self.a.lines
        finals = len(NODES) * 2 if self.a.workload == "set" else 0
        while self.index < target - finals * (len(self.keys_used) + 1) - 8:
            self.tick()
            self.background()
            slot = self.rnd.randrange(self.conc)
            if slot in self.open:
                self.complete(slot)
            else:
                self.invoke(slot)
        for slot in list(self.open):
            self.tick()
            self.complete(slot)
        if self.a.workload == "set":
            self.finals()
        self.flush()
        self.fh.close()

    def finals(self) -> None:
        lose = self.a.lose
        self.time += 5_000_000_000
        p = self.next_proc
        for key in self.keys_used:
            elems = sorted(self.acked[key])
            if lose and elems:
                drop = elems[: min(lose, len(elems))]
                lose -= len(drop)
                elems = elems[len(drop):]
            for node in NODES:
                self.tick()
                self.emit({"process": p, "type": "invoke", "f": "read-set", "key": key,
                           "value": None, "node": node, "final": True})
                self.tick()
                self.emit({"process": p, "type": "ok", "f": "read-set", "key": key,
                           "value": elems, "node": node, "final": True})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("set", "register"), default="set")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--keys", type=int, default=5, help="register keys")
    ap.add_argument("--adds-per-key", type=int, default=256)
    ap.add_argument("--lose", type=int, default=0, help="set: acked elements to drop")
    args = ap.parse_args(argv)
    Gen(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
