"""Import Porcupine's test logs (etcd Jepsen text logs and kv logs) into our history form.

Two formats (shared/corpora/porcupine/EXPECTED.md describes them in full):

- etcd Jepsen log, one event per line, a single CAS register:
  ``INFO  jepsen.util - 3\t:ok\t:cas\t[1 2]``
- kv log, one EDN-like map per line, string keys and values:
  ``{:process 3, :type :ok, :f :get, :key "9", :value "x 2 0 y"}``

In both, file order is real-time order and there are no timestamps, so each op line gets
``index`` = ``time`` = its 0-based position among the op lines. The invoke/completion pairing
is by process, as in our JSONL format.

Mapping choices (documented because the checkers rely on them):

- etcd ops have ``key`` None: the log is one register with no key (Jepsen's "single register"
  test); every checker treats key None as one register.
- etcd ``:fail :cas [A B]`` becomes a ``fail`` completion with ``error: "compare-failed"``.
  Porcupine (and the verdicts in EXPECTED.md) read it as "the CAS returned false", an
  observation that the register was not A; DESIGN §4 reads plain ``fail`` as "did not
  happen". The error tag lets the linearizability checker apply Porcupine's reading to
  exactly these ops (its ``fail`` option "auto"), while every other checker sees a fail.
- etcd ``:fail :read :timed-out`` becomes a ``fail`` completion with ``error: "timed-out"``:
  Porcupine gives it an unknown output with no effect, which is the same as dropping it.
- etcd ``:info :write/:cas :timed-out`` becomes an ``info`` completion (``error:
  "timed-out"``). Porcupine leaves such a call open until after the last event; our ``info``
  means exactly that: the op may take effect at any later time, or never.
- kv ``:f`` keeps its name (``get``/``put``/``append``); the ``ok`` of a get carries the
  string read. The initial value of every key is "" (the kv model's concern, not ours).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chaos.errors import BadInput
from chaos.history.model import History, Op

ETCD_LINE = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(\w+)\s+:(\w+)\s+(.*?)\s*$")
KV_LINE = re.compile(
    r'^\{:process\s+(\d+),\s*:type\s+:(\w+),\s*:f\s+:(\w+),\s*:key\s+"([^"]*)",\s*'
    r':value\s+(nil|"[^"]*")\}\s*$')
CAS_VALUE = re.compile(r"^\[\s*(\S+)\s+(\S+)\s*\]$")
TYPES = {"invoke", "ok", "fail", "info"}


def sniff(head: str) -> bool:
    """True when the first non-blank line of `head` looks like an etcd or kv Porcupine log."""
    for line in head.splitlines():
        if line.strip():
            return bool(ETCD_LINE.match(line) or KV_LINE.match(line))
    return False


def load(path: str | Path) -> History:
    """Read a Porcupine log (either format, recognised by its first line) into a History.

    Raises BadInput (exit 4) for a missing/unreadable/empty file, a line that is neither
    format, and a completion with no open invoke of the same process, naming file:line.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput("no such file", where=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read file: {exc}", where=str(p)) from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise BadInput("history is empty", where=str(p))
    kv = KV_LINE.match(lines[0][1]) is not None
    parse = _parse_kv if kv else _parse_etcd
    ops: list[Op] = []
    open_procs: set[int] = set()
    for n, line in lines:
        where = f"{p}:{n}"
        op = parse(line, where)
        op["index"] = op["time"] = len(ops)
        proc = op["process"]
        if op["type"] == "invoke":
            if proc in open_procs:
                raise BadInput(f"process {proc} invokes while its previous op is still open",
                               where=where)
            open_procs.add(proc)
        else:
            if proc not in open_procs:
                raise BadInput(f"{op['type']} completion with no open invoke of process {proc}",
                               where=where)
            open_procs.discard(proc)
        ops.append(op)
    return History.from_ops(ops, source=str(p))


def _parse_etcd(line: str, where: str) -> Op:
    """One etcd Jepsen line -> an op dict (see the module doc for the mapping)."""
    m = ETCD_LINE.match(line)
    if m is None:
        raise BadInput("not a Porcupine etcd log line (expected 'INFO  jepsen.util - P\\t:type"
                       "\\t:f\\tvalue')", where=where)
    proc, typ, f, raw = int(m[1]), m[2], m[3], m[4]
    if typ not in TYPES:
        raise BadInput(f"unknown op type :{typ}", where=where)
    if f not in ("read", "write", "cas"):
        raise BadInput(f"unknown etcd op :{f} (expected :read, :write or :cas)", where=where)
    op: Op = {"process": proc, "type": typ, "f": f, "key": None}
    if raw == ":timed-out":
        if typ == "invoke" or typ == "ok":
            raise BadInput(f":{typ} with :timed-out makes no sense", where=where)
        op["value"] = None
        op["error"] = "timed-out"
        return op
    op["value"] = _etcd_value(f, raw, where)
    if typ == "fail" and f == "cas":
        op["error"] = "compare-failed"
    return op


def _etcd_value(f: str, raw: str, where: str) -> Any:
    """Parse an etcd value: nil, an integer, or [A B] for cas."""
    if f == "cas":
        m = CAS_VALUE.match(raw)
        if m is None:
            raise BadInput(f"bad cas value {raw!r} (expected [A B])", where=where)
        return [_scalar(m[1], where), _scalar(m[2], where)]
    return _scalar(raw, where)


def _scalar(raw: str, where: str) -> int | None:
    if raw == "nil":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadInput(f"bad value {raw!r} (expected an integer or nil)", where=where) from None


def _parse_kv(line: str, where: str) -> Op:
    """One kv map line -> an op dict with string key and value."""
    m = KV_LINE.match(line)
    if m is None:
        raise BadInput("not a Porcupine kv log line (expected '{:process P, :type :T, :f :F, "
                       ":key \"K\", :value V}')", where=where)
    typ, f = m[2], m[3]
    if typ not in TYPES:
        raise BadInput(f"unknown op type :{typ}", where=where)
    if f not in ("get", "put", "append"):
        raise BadInput(f"unknown kv op :{f} (expected :get, :put or :append)", where=where)
    value = None if m[5] == "nil" else m[5][1:-1]
    return {"process": int(m[1]), "type": typ, "f": f, "key": m[4], "value": value}
