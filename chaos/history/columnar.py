"""The columnar fast path of the reader: validate and pair a well-formed history with numpy.

`chaos.history.reader` parses a history chunk by chunk and hands each chunk of op dicts to
`Columns.add` at once, while the dicts are still in the CPU cache; `pair_columns` then
validates and pairs with numpy over int arrays. A million op dicts are scattered over a
large heap, so every extra pass over them costs a cache miss per object: this module does
all its per-object work in those hot chunks, and tests identity with `_pointers` instead
of looking at objects. Anything unusual -> False/None, and the reader's per-op loop
(`build_history`), which names the offending line, decides. Both must give the same
History (tests compare them).
"""
from __future__ import annotations

import ctypes
from itertools import repeat
from typing import Any

import numpy as np

from chaos.history.model import OPEN, History, frame_from_columns

INT64_MIN = -(2**63)
NAMES = ["type", "process", "f", "index", "time", "key", "value", "node", "meta", "error",
         "final"]
_T, _P, _F, _I, _TM, _K, _V, _N, _M, _E, _FIN = range(len(NAMES))
CHUNK = 4096  # ops per chunk: their dicts and values stay in the CPU cache while we read them
_TYPE_CODE = {"invoke": 0, "ok": 1, "fail": 2, "info": 3}
_TYPE_NAMES = np.array(["invoke", "ok", "fail", "info"], dtype=object)


def _dicts_to_array(ops: list[Any], names: list[str]) -> np.ndarray:
    """`names` of every op as an (ops, names) object array; a missing key -> `_MISSING`.

    The pure-Python stand-in for pandas' C loop below. Raises TypeError for a non-dict op.
    """
    if set(map(type, ops)) != {dict}:
        raise TypeError("an op is not a JSON object")
    arr = np.empty((len(ops), len(names)), dtype=object)
    for j, name in enumerate(names):
        arr[:, j] = list(map(dict.get, ops, repeat(name), repeat(_MISSING)))
    return arr


_MISSING: Any = float("nan")
try:
    # pandas' C loop reads all the names of a dict in one visit, twice as fast as a pass per
    # column; private, but there from pandas 1.x to 3.x. It marks a missing key with one
    # NaN object: take that very object, so that "missing" is a pointer test.
    from pandas._libs.lib import dicts_to_array as _d2a
    _MISSING = _d2a([{}], ["x"])[0, 0]
    _dicts_to_array = _d2a  # noqa: F811
except (ImportError, AttributeError, TypeError):  # pragma: no cover - pandas moved it
    pass
try:
    from pandas._libs.lib import is_integer_array as _is_int_array  # False for bool, NaN
except ImportError:  # pragma: no cover - pandas moved it
    def _is_int_array(col: np.ndarray, skipna: bool = False) -> bool:
        return set(map(type, col.tolist())) == {int}


def _pointers(arr: np.ndarray) -> np.ndarray:
    """The object pointers of a C-contiguous object array, as intp (a view, no copy).

    Lets "is this slot the missing marker / None" be one vectorised identity test instead of
    a pass touching every object (pd.isna): `_pointers(a) == id(x)` is `a[i] is x`.
    """
    assert arr.dtype == object and arr.flags.c_contiguous
    buf = (ctypes.c_ssize_t * arr.size).from_address(arr.ctypes.data)
    return np.frombuffer(buf, dtype=np.intp).reshape(arr.shape)  # type: ignore[call-overload]


class Columns:
    """The columns of a history, filled chunk by chunk while each chunk's ops are hot.

    A million op dicts are scattered over a large heap; every pass over them costs a cache
    miss per object. So all per-object work (type checks, codes, missing -> None) happens per
    chunk right after the chunk is parsed; what is left for `_pair` is numpy over int arrays.
    `add` returns False as soon as the history is not for the fast path.
    """

    def __init__(self, n: int) -> None:
        self.n = 0
        self.obj = {name: np.empty(n, dtype=object)
                    for name in ("process", "f", "key", "value", "node", "meta", "error")}
        self.typ = np.empty(n, dtype=np.int8)
        self.index = np.empty(n, dtype=np.int64)
        self.time = np.empty(n, dtype=np.int64)
        self.pcode = np.empty(n, dtype=np.int64)
        self.fcode = np.empty(n, dtype=np.int64)
        self.final = np.zeros(n, dtype=bool)
        self.procs: dict[Any, int] = {}
        self.fs: dict[Any, int] = {}
        self.proc_types: set[type] = set()

    def slice(self, a: int, b: int) -> "Columns":
        """Rows [a, b) as Columns of views (the codes' dicts shared)."""
        out = Columns(0)
        out.n = min(b, self.n) - a
        out.obj = {name: col[a:b] for name, col in self.obj.items()}
        for name in ("typ", "index", "time", "pcode", "fcode", "final"):
            setattr(out, name, getattr(self, name)[a:b])
        out.procs, out.fs, out.proc_types = self.procs, self.fs, self.proc_types
        return out

    def add(self, ops: list[Any]) -> bool:
        """Take the next chunk of ops; False when the history is not for the fast path."""
        try:
            return self._add(ops)
        except TypeError:  # an op not a dict, an unhashable type, process or f
            return False

    def _add(self, ops: list[Any]) -> bool:
        a = self.n
        b = a + len(ops)
        self.n = b
        arr = _dicts_to_array(ops, NAMES)
        ptrs = _pointers(arr)
        missing = ptrs == id(_MISSING)
        tl = arr[:, _T].tolist()
        typ = np.fromiter(map(_TYPE_CODE.get, tl, repeat(-1)), dtype=np.int8, count=len(tl))
        if typ.min() < 0:
            return False
        self.typ[a:b] = typ
        for name, j in (("index", _I), ("time", _TM)):
            col = arr[:, j]
            if not _is_int_array(col, skipna=False):  # also False for bools and NaN
                return False
            try:
                getattr(self, name)[a:b] = col.astype(np.int64)
            except OverflowError:
                return False
        if missing[:, _F].any() or (ptrs[:, _F] == id(None)).any():
            return False  # no f, or "f": null (the slow path says "missing 'f'")
        for j, codes, known in ((_P, self.pcode, self.procs), (_F, self.fcode, self.fs)):
            col = arr[:, j]
            vals = col.tolist()
            for v in set(vals).difference(known):  # codes: first-seen order, per history
                known[v] = len(known)
            codes[a:b] = np.fromiter(map(known.__getitem__, vals), dtype=np.int64,
                                     count=len(vals))
            if j == _P:
                self.proc_types.update(map(type, vals))
            self.obj[NAMES[j]][a:b] = col
        for name, j in (("key", _K), ("value", _V), ("node", _N), ("meta", _M),
                        ("error", _E)):
            col = arr[:, j]
            m = missing[:, j]
            if m.any():
                col[m] = None
            self.obj[name][a:b] = col
        if not missing[:, _FIN].all():
            fin = arr[:, _FIN]
            self.final[a:b] = [x is True for x in fin.tolist()]
        return True


def fast_build(ops: list[Any], source: str, warnings: list[str],
                check_time: bool = True) -> History | None:
    """Vectorised validation and pairing for well-formed histories; None if anything is off.

    Produces exactly what `build_history` produces (tests compare the two), but with numpy
    over columns instead of a Python loop per op. It does not explain problems: on any doubt
    it returns None and the slow path, which names the offending line, takes over.
    """
    cols = Columns(len(ops))
    for k in range(0, len(ops), CHUNK):
        if not cols.add(ops[k:k + CHUNK]):
            return None
    return pair_columns(cols, ops, source, warnings, check_time)


def pair_columns(c: Columns, ops: list[Any], source: str, warnings: list[str],
          check_time: bool) -> History | None:
    """Validate the columns of `c` and pair invokes with completions (None: slow path)."""
    n = c.n
    if not n or not c.proc_types <= {int, str}:
        return None
    index, times = c.index, c.time
    if (index.max() == OPEN or times.max() == OPEN
            or index.min() == INT64_MIN or times.min() == INT64_MIN):
        return None
    if check_time and n > 1 and np.any(times[1:] < times[:-1]):
        return None
    if n > 1 and not np.all(index[1:] > index[:-1]) and np.unique(index).size != n:
        return None
    is_inv = c.typ == 0
    codes = c.pcode
    order = np.argsort(codes, kind="stable")
    cs = codes[order]
    pos = np.arange(n)
    start = np.zeros(n, dtype=bool)
    start[0] = True
    start[1:] = cs[1:] != cs[:-1]
    rank = pos - np.maximum.accumulate(np.where(start, pos, 0))
    if not np.array_equal(is_inv[order], rank % 2 == 0):
        return None  # a completion without an invoke, or a second invoke while one is open
    has_next = np.zeros(n, dtype=bool)
    has_next[:-1] = ~start[1:]
    comp_of = np.full(n, -1, dtype=np.int64)
    sel = is_inv[order] & has_next
    comp_of[order[sel]] = order[np.nonzero(sel)[0] + 1]
    inv = np.nonzero(is_inv)[0]
    comp = comp_of[inv]
    done = comp >= 0
    cd = comp[done]
    if not np.array_equal(c.fcode[inv[done]], c.fcode[cd]):
        return None  # a completion of another f than its invoke
    m = len(inv)
    obj = c.obj

    def completed(col: np.ndarray, default: Any = None) -> np.ndarray:
        out = np.full(m, default, dtype=object)
        out[done] = col[cd]
        return out

    node = completed(obj["node"])
    no_node = _pointers(node) == id(None)
    node[no_node] = obj["node"][inv[no_node]]
    complete_time = np.full(m, OPEN, dtype=np.int64)
    complete_time[done] = times[cd]
    complete_index = np.full(m, -1, dtype=np.int64)
    complete_index[done] = index[cd]
    final = c.final[inv]
    final[done] |= c.final[cd]
    ctype = np.full(m, 3, dtype=np.int8)
    ctype[done] = c.typ[cd]
    data: dict[str, Any] = {
        "process": obj["process"][inv], "f": obj["f"][inv], "key": obj["key"][inv],
        "value": obj["value"][inv], "result": completed(obj["value"]),
        "type": _TYPE_NAMES[ctype],
        "invoke_time": times[inv], "complete_time": complete_time,
        "invoke_index": index[inv], "complete_index": complete_index,
        "node": node, "meta": completed(obj["meta"]), "final": final,
        "error": completed(obj["error"]),
    }
    return History(ops=ops, pairs=frame_from_columns(data), source=source,
                   warnings=list(warnings))
