"""Import a Jepsen `history.edn` (one map per line, or one vector of maps) into our history.

Parsing: the `edn_format` library is the reference, but it rebuilds its PLY parser on every
call and parses about 1-2k lines/s, too slow for real Jepsen histories (100k+ lines). So a
small tokenizer (`fast_parse`) reads the subset Jepsen writes (maps, vectors, lists, sets,
keywords, strings, characters, numbers, nil/true/false, tagged records) in one pass;
anything else, and any error, falls back to edn_format for the whole file, which then also
names the bad line. Tests check both give the same ops. Each op map becomes one of our op
dicts, validated and paired by the same code as our JSONL (chaos.history.reader), so an
imported history obeys the same rules (completion needs an invoke, unique index, ...).

Mapping (Jepsen -> ours), chosen so checkers need not know where a history came from:

- keywords become strings (`:invoke` -> "invoke", `:read` -> "read", `:nemesis` -> "nemesis");
  sets become sorted lists, vectors/lists become lists, maps become dicts, nil becomes None,
  big decimals/ratios become numbers, unknown tagged literals (`#jepsen.history.Op{...}`,
  `#error {...}`, `#object[...]`) are read as their content.
- `:time` (ns, relative) is kept; if any op lacks it, every op's time is its index (file order
  is then the only clock). Missing `:index` -> the op's position. Time order is not enforced:
  Jepsen samples the clock per thread before appending, so small inversions are normal.
- Jepsen's nemesis (and any non-integer process) logs an op as two `:info` lines; the first
  becomes our "invoke" and the second an "ok" completion (it reports what the nemesis did; no
  real outcome is unknown). Explicit `:invoke`/`:ok` lines are taken as they are.
- Keyed (jepsen.independent) histories: the rule is "every client invoke of read, write, cas
  or add carries a 2-element vector [k v], and every cas carries [k [old new]]". Unkeyed
  histories can never satisfy it, because an unkeyed read invokes with nil and an unkeyed
  write/add with a scalar; a cas-only unkeyed history has [old new] with a scalar `new`. When
  the rule holds, `:value [k v]` becomes key=k, value=v on every client op of those fs. An
  explicit `:key` field (as in Porcupine's kv logs) is kept as is.
- Set workloads: when client ops include `add`, a `read` whose ok value is a collection is a
  read of the whole set; such reads become f "read-set" (both lines) with a sorted list value.
"""
from __future__ import annotations

import datetime
import functools
import re
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import edn_format
from edn_format import EDNDecodeError, ImmutableDict, ImmutableList, Keyword, Symbol

from chaos.errors import BadInput
from chaos.history.model import History, Op
from chaos.history.reader import pair_ops, resolve_history_path

NAME = "jepsen-edn"
#: The op fields we carry over; the others (e.g. :exception stack traces) are dropped.
FIELDS = ("index", "time", "process", "type", "f", "key", "value", "node", "error", "final")
KEYED_FS = frozenset(("read", "write", "cas", "add"))
_HEAD = re.compile(r"\A(?:\s|;[^\n]*\n)*(?:[\[(]\s*)?(?:#[A-Za-z][\w.\-]*\s*)?\{\s*:")
_TAG = re.compile(r"#([A-Za-z][\w.\-/]*)")
_BUILTIN_TAGS = frozenset(("inst", "uuid"))


def sniff(head: str) -> bool:
    """True when `head` opens like EDN op maps: `{:`, `[{:` or a tagged record `#x.Op{:`."""
    return bool(_HEAD.match(head))


def _register_tags(text: str) -> None:
    """Teach edn_format every tag the file uses, reading a tagged value as its content.

    edn_format refuses unknown tags; Jepsen writes records (#jepsen.history.Op{...}) and
    exceptions (#error {...}, #object[...]). Registration is global but idempotent.
    """
    for tag in set(_TAG.findall(text)) - _BUILTIN_TAGS:
        edn_format.add_tag(tag, lambda value: value)


def plain(x: Any) -> Any:
    """An EDN value as plain JSON-able Python (see the module doc for each rule)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Keyword):
        return x.name
    if isinstance(x, (ImmutableDict, dict)):
        return {_plain_key(k): plain(v) for k, v in x.items()}
    if isinstance(x, (frozenset, set)):
        return sort_elements([plain(v) for v in x])
    if isinstance(x, (ImmutableList, list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, Decimal):
        return int(x) if x == x.to_integral_value() else float(x)
    if isinstance(x, Fraction):
        return float(x)
    if isinstance(x, (Symbol, uuid.UUID)):
        return str(x)
    if isinstance(x, datetime.datetime):
        return x.isoformat()
    return str(x)  # Char and anything exotic


def _plain_key(k: Any) -> Any:
    v = plain(k)
    return v if isinstance(v, (str, int)) and not isinstance(v, bool) else str(v)


def sort_elements(values: list[Any]) -> list[Any]:
    """Sort set elements: numbers then strings then the rest, each group in natural order."""
    def key(v: Any) -> tuple[int, Any]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (0, v)
        if isinstance(v, str):
            return (1, v)
        return (2, repr(v))
    return sorted(values, key=key)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 text (byte {exc.start})", where=str(path)) from None
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", where=str(path)) from None


@functools.cache
def _ply_parser() -> Callable[[str], list[Any]] | None:
    """edn_format's own grammar, built once (its loads_all rebuilds it on every call).

    Uses edn_format's modules as PLY grammar sources; if that ever stops working (a new
    edn_format), None, and callers use the public loads_all.
    """
    try:
        import ply.lex
        import ply.yacc
        from edn_format import edn_lex, edn_parse

        lexer = ply.lex.lex(module=edn_lex, reflags=re.UNICODE)
        parser = ply.yacc.yacc(module=edn_parse, debug=False, write_tables=False)
    except Exception:  # noqa: BLE001 - any failure means: use the public API
        return None

    def loads_all(text: str) -> list[Any]:
        return list(parser.parse(text, lexer=lexer.clone()) or [])
    return loads_all


def _loads_all(text: str) -> list[Any]:
    """All EDN values in `text`, via the cached parser when available."""
    fast = _ply_parser()
    if fast is None:
        return list(edn_format.loads_all(text))
    if not text.strip():
        return []
    return fast(text)


def _parse(text: str, source: str, warnings: list[str]) -> tuple[list[Any], list[str]]:
    """EDN top-level values and where each came from ("file:line" or "file: op #i")."""
    stripped = text.lstrip()
    if stripped[:1] in ("[", "("):
        try:
            values = _loads_all(text)
        except (EDNDecodeError, NotImplementedError, ValueError, TypeError) as exc:
            raise BadInput(f"bad EDN: {exc}", where=source) from None
        if len(values) != 1 or not isinstance(values[0], (ImmutableList, list, tuple)):
            raise BadInput("expected one vector of op maps", where=source)
        vector = list(values[0])
        return vector, [f"{source}: op #{i}" for i in range(len(vector))]
    lines = text.split("\n")
    ops: list[Any] = []
    where: list[str] = []
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        try:
            vals = _loads_all(s)
            if len(vals) != 1:
                raise EDNDecodeError(f"{len(vals)} values on one line")
        except (EDNDecodeError, NotImplementedError, ValueError, TypeError) as exc:
            last = all(not rest.strip() for rest in lines[lineno:])
            if last and not text.endswith("\n"):
                warnings.append(f"{source}:{lineno}: truncated last line skipped "
                                "(no newline, not valid EDN: a crash mid-write?)")
                break
            return _parse_multiline(text, source, f"{source}:{lineno}", exc)
        ops.append(vals[0])
        where.append(f"{source}:{lineno}")
    return ops, where


def _parse_multiline(text: str, source: str, first_bad: str, first_exc: Exception
                     ) -> tuple[list[Any], list[str]]:
    """Maps spread over several lines (pretty-printed): parse the whole text at once.

    If that fails too, the file is garbage: name the first line that did not parse alone.
    """
    try:
        values = _loads_all(text)
    except (EDNDecodeError, NotImplementedError, ValueError, TypeError):
        raise BadInput(f"bad EDN: {first_exc}", where=first_bad) from None
    return values, [f"{source}: op #{i}" for i in range(len(values))]


class _Fallback(Exception):
    """The fast tokenizer met something it does not handle: use edn_format instead."""


_TOKEN = re.compile(r"""
    (?P<ws>[\s,]+|;[^\n]*)
  | (?P<open>\#\{|[\[({])
  | (?P<close>[\])}])
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9a-fA-F]{4}|\S))
  | (?P<tag>\#[A-Za-z][\w.\-/]*)
  | (?P<num>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[NM]?)(?=[\s,\[\](){}";]|\Z)
  | (?P<kw>:[A-Za-z_*+!?<>=.\-][\w*+!?<>=.\-/:\#']*)
  | (?P<sym>[A-Za-z_*+!?<>=.\-][\w*+!?<>=.\-/:\#']*)
  | (?P<other>.)
""", re.X | re.S)
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_SYMBOLS = {"nil": None, "true": True, "false": False}
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f",
          "backspace": "\b"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}


def _unescape(m: re.Match[str]) -> str:
    e = m.group(1)
    if len(e) == 5:
        return chr(int(e[1:], 16))
    if e not in _ESCAPES:
        raise _Fallback
    return _ESCAPES[e]


def _edn_string(body: str) -> str:
    return _ESCAPE.sub(_unescape, body) if "\\" in body else body


def _edn_char(tok: str) -> str:
    name = tok[1:]
    if len(name) == 1:
        return name
    if name in _CHARS:
        return _CHARS[name]
    return chr(int(name[1:], 16))


def _edn_number(tok: str) -> int | float:
    if tok[-1] == "N":
        return int(tok[:-1])
    if tok[-1] == "M":
        d = Decimal(tok[:-1])
        return int(d) if d == d.to_integral_value() else float(d)
    if "." in tok or "e" in tok or "E" in tok:
        return float(tok)
    return int(tok)


def fast_parse(text: str, source: str) -> tuple[list[Any], list[str]]:
    """Top-level op maps of `text` as plain values, each with "file:line"; or _Fallback.

    Accepts a sequence of maps (one per line, or spread over lines) or one vector of maps.
    Values come out as `plain` would make them (keywords -> names, sets -> sorted lists).
    """
    stack: list[tuple[str, list[Any], int]] = []
    top: list[tuple[Any, int]] = []     # (value, start pos) at depth 0
    inner: list[tuple[Any, int]] = []   # (value, start pos) directly inside a top vector
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "ws":
            continue
        tok = m.group()
        if kind == "open":
            stack.append((tok, [], m.start()))
            continue
        if kind == "close":
            if not stack or _CLOSER[stack[-1][0]] != tok:
                raise _Fallback
            opener, items, start = stack.pop()
            if opener == "{":
                if len(items) % 2:
                    raise _Fallback
                keys = items[0::2]
                if all(type(k) is str for k in keys):
                    value: Any = dict(zip(keys, items[1::2]))
                else:
                    value = {_plain_key(k): v for k, v in zip(keys, items[1::2])}
            elif opener == "#{":
                value = sort_elements(items)
            else:
                value = items
        elif kind == "kw":
            value, start = tok[1:], -1
        elif kind == "str":
            value, start = _edn_string(tok[1:-1]), -1
        elif kind == "char":
            value, start = _edn_char(tok), -1
        elif kind == "num":
            value, start = _edn_number(tok), -1
        elif kind == "sym":
            value, start = _SYMBOLS.get(tok, tok), -1
        elif kind == "tag" and tok not in ("#inst", "#uuid"):
            continue  # a tagged record reads as its content
        else:
            raise _Fallback  # #_ discards, #inst, ratios, garbage: the library's job
        if not stack:
            top.append((value, m.start() if start < 0 else start))
        else:
            if len(stack) == 1 and stack[0][0] in ("[", "("):
                inner.append((value, m.start() if start < 0 else start))
            stack[-1][1].append(value)
    if stack:
        raise _Fallback  # unbalanced: maybe a truncated last line, which the slow path reports
    if len(top) == 1 and isinstance(top[0][0], list):
        pairs = inner
    else:
        pairs = top
    if not all(isinstance(v, dict) for v, _ in pairs):
        raise _Fallback
    starts = [pos for _, pos in pairs]
    where = []
    line, last = 1, 0
    for pos in starts:
        line += text.count("\n", last, pos)
        last = pos
        where.append(f"{source}:{line}")
    return [v for v, _ in pairs], where


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2


def load(path: str | Path) -> History:
    """Read a Jepsen history.edn (or a run dir holding one) into a validated History."""
    p = Path(path)
    if p.is_dir() and (p / "history.edn").is_file():
        p = p / "history.edn"
    p = resolve_history_path(p)
    source = str(p)
    text = _read_text(p)
    if not text.strip():
        raise BadInput("history is empty", where=source)
    warnings: list[str] = []
    convert: Callable[[Any], Any] = _same  # fast_parse already gives plain values
    try:
        raw, where = fast_parse(text, source)
    except _Fallback:
        convert = plain  # something unusual (or wrong): the library decides, and explains
        _register_tags(text)
        raw, where = _parse(text, source, warnings)
    if not raw:
        raise BadInput("history is empty", where=source)
    ops = [_convert(m, where[i], convert) for i, m in enumerate(raw)]
    _number(ops)
    _split_keys(ops)
    _pair_nemesis_info(ops)
    _set_reads(ops)
    return pair_ops(ops, source, warnings=warnings, check_time=False,
                    where=lambda i: where[i])


def _same(x: Any) -> Any:
    return x


def _convert(m: Any, where: str, convert: Callable[[Any], Any] = plain) -> Op:
    """One EDN op map -> our op dict (fields in FIELDS only), or BadInput naming `where`."""
    if not isinstance(m, (ImmutableDict, dict)):
        raise BadInput(f"expected an op map, got {type(m).__name__}", where=where)
    op: Op = {}
    for k, v in m.items():
        name = k if type(k) is str else k.name if isinstance(k, Keyword) else str(k)
        if name in FIELDS:
            op[name] = convert(v)
    if "type" not in op:
        raise BadInput("op map has no :type", where=where)
    proc = op.get("process")
    if isinstance(proc, float) and proc.is_integer():
        op["process"] = int(proc)
    for field in ("index", "time"):
        if field in op and not (isinstance(op[field], int) and not isinstance(op[field], bool)):
            raise BadInput(f":{field} must be an integer, got {op[field]!r}", where=where)
    return op


def _number(ops: list[Op]) -> None:
    """Fill missing :index with the position; missing :time (on any op) -> time = index."""
    for pos, op in enumerate(ops):
        op.setdefault("index", pos)
    if any("time" not in op for op in ops):
        for op in ops:
            op["time"] = op["index"]


def _client(op: Op) -> bool:
    p = op.get("process")
    return isinstance(p, int) and not isinstance(p, bool)


def _split_keys(ops: list[Op]) -> None:
    """Turn jepsen.independent [k v] values into key/value when the whole history is keyed."""
    invokes = [op for op in ops if _client(op) and op.get("type") == "invoke"
               and op.get("f") in KEYED_FS and "key" not in op]
    if not invokes:
        return
    for op in invokes:
        v: Any = op.get("value")
        if not _is_pair(v) or isinstance(v[0], (list, dict)):
            return
        if op["f"] == "cas" and not _is_pair(v[1]):
            return
    open_key: dict[Any, Any] = {}
    for op in ops:
        if not _client(op) or op.get("f") not in KEYED_FS or "key" in op:
            continue
        v = op.get("value")
        if op.get("type") == "invoke":
            op["key"], op["value"] = v[0], v[1]
            open_key[op["process"]] = v[0]
        else:
            key = open_key.pop(op["process"], None)
            if _is_pair(v) and (key is None or v[0] == key):
                op["key"], op["value"] = v[0], v[1]
            elif key is not None:
                op["key"] = key


def _pair_nemesis_info(ops: list[Op]) -> None:
    """Non-client processes log (:info, :info): make it (invoke, ok) as our format wants."""
    is_open: dict[Any, bool] = {}
    for op in ops:
        if _client(op):
            continue
        proc = op.get("process")
        typ = op.get("type")
        if typ == "invoke":
            is_open[proc] = True
        elif typ == "info":
            op["type"] = "ok" if is_open.get(proc) else "invoke"
            is_open[proc] = not is_open.get(proc, False)
        else:
            is_open[proc] = False


def _set_reads(ops: list[Op]) -> None:
    """In a history with `add` ops, reads returning collections are whole-set reads."""
    if not any(_client(op) and op.get("f") == "add" for op in ops):
        return
    reads = [op for op in ops if _client(op) and op.get("f") == "read"]
    if not any(op.get("type") == "ok" and isinstance(op.get("value"), list) for op in reads):
        return
    for op in reads:
        op["f"] = "read-set"
        if isinstance(op.get("value"), list):
            op["value"] = sort_elements(op["value"])

