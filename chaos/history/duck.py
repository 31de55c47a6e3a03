"""Read a history.jsonl with DuckDB's JSON reader, straight into the streaming reader's columns.

Parsing every line into a Python dict (orjson) and then into columns is most of what a big
history costs (~4 us a line of the ~10 of a set history's analysis). DuckDB parses the lines
in C++ on every core and hands back Arrow columns, so no Python object is made per line:
ints stay int64, a read-set's elements one flat int64 buffer, and the few distinct strings of
a column (types, processes, fs, keys, nodes, meta) are decoded once each. The streaming
reader (`chaos.history.pairing.Pairer.columns`) then checks the rules and pairs as always.

What comes out is exactly what the orjson path gives (tests compare the two on every stored
history and on generated ones): every field is read as DuckDB's JSON type (its text), ints
and read-set int lists are cast in DuckDB only where the text is a plain integer (`json_type`
BIGINT/UBIGINT that fits int64, a list matching a digits-only pattern), and everything else is
decoded from its text by orjson, one distinct text at a time.

This path takes only the plain shape our recorder writes. Anything else raises `NotHere`
and the caller reads the file with the orjson path, which names any problem by file and
line: a file that does not end with a newline (a crash mid-write), a BOM, a line DuckDB
refuses (not an object, bad JSON, a duplicate key), a missing or non-integer index or time, a
type that is not one of the four, a float anywhere it would be read, and the few things
DuckDB's parser accepts that JSON does not (a trailing comma, NaN or Infinity in any case,
inf, a number beyond a double, nesting deeper than orjson's limit, a vertical tab or form
feed around a line's object): a thread beside the read (`_Lenient`) matches the file's raw
bytes against one RE2 pattern for them (`_LENIENT_RE`, pyarrow's RE2 over pieces of 32 MB,
with the GIL released). Without the duckdb package, every file is `NotHere`.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from chaos.history.columnar import Columns
from chaos.history.forked import cores

#: rows DuckDB hands over at a time (its vectors are 2048 rows: a multiple of that)
BATCH_ROWS = 65536
#: DuckDB's memory (its own buffers; the batches we hold are counted by us)
MEMORY_LIMIT = "256MB"
_INT = "json_type({c}) IN ('BIGINT', 'UBIGINT')"
#: the bytes of a JSON list whose elements are all integer literals
_INT_LIST_CHARS = b"0123456789,-[]"
_INT_LIST_BYTES = np.zeros(256, dtype=bool)
_INT_LIST_BYTES[list(_INT_LIST_CHARS)] = True


class NotHere(Exception):
    """This file is not for the DuckDB path: read it with the orjson path."""


def available() -> bool:
    try:
        import duckdb  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _query(path: Path) -> str:
    """The rows: a type code, index and time when they are integers (else null), the texts
    of the other fields (JSON: a string keeps its quotes, so 1 and "1" differ), the value as
    an int where it is one, as a cast int list (and its text, checked in `_values`) for a
    read-set's completion, else as text.

    The value's JSON type is asked once, in a subquery, and its int cast once: each
    json_type() parses the JSON text again, and the value's was asked three times (int,
    not int, list), ~2.3 of the query's ~19 s CPU on 10M register lines."""
    cols = ", ".join(f"{c}: 'JSON'" for c in ("type", "process", "f", "key", "value", "index",
                                               "time", "node", "meta", "error", "final"))
    # a client's (integer process) read-set completion: the rows the spill packs
    listed = ("vt = 'ARRAY' AND f = '\"read-set\"' AND type <> '\"invoke\"' "
              f"AND {_INT.format(c='process')}")
    return f"""
        SELECT
          CASE type::VARCHAR WHEN '"invoke"' THEN 0 WHEN '"ok"' THEN 1 WHEN '"fail"' THEN 2
                             WHEN '"info"' THEN 3 ELSE -1 END::TINYINT AS typ,
          CASE WHEN {_INT.format(c='index')} THEN TRY_CAST(index AS BIGINT) END AS idx,
          CASE WHEN {_INT.format(c='time')} THEN TRY_CAST(time AS BIGINT) END AS tm,
          process::VARCHAR AS process, f::VARCHAR AS f, key::VARCHAR AS key,
          vi AS vint,
          CASE WHEN {listed} THEN TRY_CAST(value AS BIGINT[]) END AS vlist,
          CASE WHEN vi IS NULL THEN value::VARCHAR END AS vraw,
          node::VARCHAR AS node, meta::VARCHAR AS meta, error::VARCHAR AS error,
          final::VARCHAR = 'true' AS final
        FROM (SELECT *, CASE WHEN vt IN ('BIGINT', 'UBIGINT')
                             THEN TRY_CAST(value AS BIGINT) END AS vi
              FROM (SELECT *, json_type(value) AS vt
                    FROM read_json({_literal(path)}, format = 'newline_delimited',
                                   columns = {{{cols}}})))
    """


#: what DuckDB's JSON parser (yyjson, lenient) accepts and JSON (orjson) refuses, as one RE2
#: pattern over the file's raw bytes (lines end at \n: DuckDB's newline-delimited reader
#: takes a \r inside a line as whitespace). Checked with duckdb 2.0 and orjson 3.13:
#: - a trailing comma before ] or } (whitespace between included), and a comma that ends a
#:   line or comes before a \r;
#: - NaN and Infinity in any case, "inf" and "nan" too, with or without a minus sign: a
#:   literal in a value's place (after : [ , or at a line's start, whitespace between) and
#:   ended as a value is (whitespace, , ] } or the end: "infinite" and "nano" are refused),
#:   and "NaN" and "Infinity" anywhere;
#: - a number beyond a double (1e999, 400 digits): DuckDB reads it as infinity, orjson
#:   refuses it. Only an exponent of 3 digits or more, or an integer part of 210 digits or
#:   more (with an exponent under 100), can get there;
#: - nesting deeper than orjson's 1024 levels (yyjson has no limit): any line with 1000
#:   [ or { is flagged;
#: - a vertical tab or form feed anywhere (DuckDB takes them before or after a line's
#:   object; orjson refuses them).
#: Everything is over-approximated: a pattern inside a string only sends the file to the
#: orjson path. Binary input: RE2 works on bytes (Latin-1), so no byte is left unmatched.
_LENIENT_RE = (r"[\x0b\x0c]"
               r"|,\s*(?:[\]}\r\n]|$)"
               r"|NaN|Infinity|(?:^|[:\[,\n])\s*-?\s*(?i:nan|inf(?:inity)?)(?:\s|[,\]}]|$)"
               r"|[0-9][eE]\+?[0-9]{3}|[0-9]{210}"
               r"|(?:[\[{][^\n\[{]*){1000}")
#: the most the scan reads at a time (its one buffer, reused). Each piece is one RE2 match
#: and pyarrow compiles the pattern anew for each (~4 ms): 4 MB pieces cost 4.5 s CPU for
#: 10M register lines, 16 MB 3.4 s, 32 MB 3.3 s
SCAN_CHUNK = 32 << 20


def lenient_scan(path: Path, stop: threading.Event | None = None,
                 chunk: int = SCAN_CHUNK) -> bool | str:
    """True if the file has a line `_LENIENT_RE` flags; a reason (str) when it cannot tell.

    The file is read in pieces of up to `chunk` bytes cut after a newline (a line never
    straddles two pieces) into one reused buffer, and each piece is matched whole by
    pyarrow's RE2 (one call, no per-line cost; pyarrow releases the GIL for it, and the
    read does too). A line longer than `chunk` gives up (the orjson path reads it)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    buf = bytearray(chunk)
    view = memoryview(buf)
    held = 0  # the start of a line carried over from the previous read
    with open(path, "rb", buffering=0) as fh:
        while stop is None or not stop.is_set():
            got = fh.readinto(view[held:])
            end = held + got
            if not got:  # the end of the file: what is left (a last line without newline)
                if not end:
                    return False
                cut = end
            else:
                cut = buf.rfind(b"\n", 0, end) + 1
                if not cut:
                    if end == chunk:
                        return f"a line longer than {chunk} bytes"
                    held = end  # a short read: read on
                    continue
            offsets = pa.py_buffer(np.array([0, cut], dtype=np.int64))
            piece = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets,
                                                                 pa.py_buffer(view[:cut])])
            if pc.match_substring_regex(piece, _LENIENT_RE)[0].as_py():
                return True
            if not got:
                return False
            held = end - cut
            buf[:held] = buf[cut:end]
    return "stopped"


class _Lenient(threading.Thread):
    """Scans the file for what DuckDB's JSON parser accepts and JSON does not
    (`lenient_scan`) beside the read, on its own thread (the read leaves most of one core
    idle: its consumer is one Python thread)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True, name="chaos-duck-lenient")
        self.path = path
        self.found: bool | str = "not run"
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.found = lenient_scan(self.path, self.stop)
        except Exception as exc:  # noqa: BLE001 - any failure: not for this path
            self.found = f"the scan failed: {exc}"

    def close(self) -> None:
        """Stop the scan if it still runs (the read gave up) and wait for the thread."""
        self.stop.set()
        self.join()


def _connect(threads: int, temp: Path | None) -> Any:
    """A DuckDB connection; what it spills goes under `temp` (the analysis's own directory,
    removed with it), never into the working directory (DuckDB's default)."""
    import duckdb
    config: dict[str, Any] = {"threads": threads, "memory_limit": MEMORY_LIMIT,
                              "preserve_insertion_order": True}
    if temp is not None:
        config["temp_directory"] = str(temp / "duckdb")
    con = duckdb.connect(config=config)
    con.execute("SET enable_progress_bar = false")  # its bar on the terminal: ours is enough
    return con


def batches(path: Path, temp: Path | None = None) -> Iterator[Any]:
    """The file's rows as Arrow record batches (see `_query`); NotHere as the module says.
    `temp`: where DuckDB may spill (None: its default)."""
    if not available():
        raise NotHere("no duckdb")
    with open(path, "rb") as fh:
        if fh.read(3) == b"\xef\xbb\xbf":
            raise NotHere("a BOM")
        fh.seek(0, 2)
        if fh.tell() == 0:
            raise NotHere("empty")
        fh.seek(-1, 2)
        if fh.read(1) != b"\n":
            raise NotHere("no newline at the end")
    scan = _Lenient(path)
    scan.start()
    producer = _Producer(path, temp)
    producer.start()
    try:
        while True:
            item = producer.queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise NotHere(str(item).splitlines()[0] if str(item) else repr(item))
            yield item
        scan.join()
        if scan.found:
            raise NotHere("not plain JSON" if scan.found is True else str(scan.found))
    finally:
        producer.close()
        scan.close()


class _Producer(threading.Thread):
    """Runs the query and fetches its batches on its own thread (DuckDB releases the GIL
    while it works), a few batches ahead of the Python thread that pairs them: the fetch
    does part of DuckDB's work on the fetching thread, which would otherwise be the
    consumer's."""

    AHEAD = 4  # batches fetched ahead (~10 MB each at most)

    def __init__(self, path: Path, temp: Path | None):
        super().__init__(daemon=True, name="chaos-duck-read")
        self.path, self.temp = path, temp
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=self.AHEAD)
        self.stop = threading.Event()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            con = _connect(max(1, cores()), self.temp)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
            return
        try:
            rel = con.sql(_query(self.path))
            reader = (rel.to_arrow_reader(BATCH_ROWS) if hasattr(rel, "to_arrow_reader")
                      else rel.fetch_record_batch(BATCH_ROWS))
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    self._put(None)
                    return
                if not self._put(batch):
                    return
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            con.close()

    def close(self) -> None:
        """Stop fetching (the consumer is done or gave up) and wait for the thread."""
        self.stop.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.join()


def _numpy(arr: Any, fill: Any) -> np.ndarray:
    """An Arrow array as numpy, nulls as `fill` (no copy to fill when there is none)."""
    if arr.null_count:
        arr = arr.fill_null(fill)
    return arr.to_numpy(zero_copy_only=False)


def _decoded(arr: Any, default: Any = None) -> tuple[np.ndarray, list[Any], np.ndarray]:
    """A column of JSON texts (Arrow) as an object array of their values (null -> `default`),
    each distinct text decoded once; the distinct values; each row's position among them
    (null: len(values))."""
    import pyarrow.compute as pc
    if arr.null_count == len(arr):  # a field no line of the batch has
        return np.full(len(arr), default, dtype=object), [], np.zeros(len(arr), np.int64)
    enc = pc.dictionary_encode(arr)
    try:
        values = [orjson.loads(t) for t in enc.dictionary.to_pylist()]
    except orjson.JSONDecodeError:
        raise NotHere("a value DuckDB read and JSON refuses") from None
    codes = _numpy(enc.indices, len(values))
    table = np.empty(len(values) + 1, dtype=object)
    table[:len(values)] = values
    table[len(values)] = default
    return table[codes], values, codes


def to_columns(batch: Any, procs: dict[Any, int], fs: dict[Any, int]) -> Columns:
    """One record batch as `Columns` (process and f coded in `procs` and `fs`, shared with
    the pairer across batches). NotHere for anything the module doc sends to orjson."""
    n = batch.num_rows
    col = batch.column
    cols = Columns(0)
    cols.n = n
    typ = col("typ").to_numpy(zero_copy_only=False)
    if n and typ.min() < 0:
        raise NotHere("a type that is not invoke, ok, fail or info")
    if col("idx").null_count or col("tm").null_count:
        raise NotHere("an index or time that is missing or not an integer")
    cols.typ = typ.astype(np.int8, copy=False)
    cols.index = col("idx").to_numpy()
    cols.time = col("tm").to_numpy()
    if col("f").null_count or col("process").null_count:
        raise NotHere("a missing f or process")
    for name, codes_of in (("process", procs), ("f", fs)):
        obj, values, at = _decoded(col(name))
        for v in values:
            try:
                if v not in codes_of:
                    codes_of[v] = len(codes_of)
            except TypeError:  # a list or dict: unhashable
                raise NotHere(f"an unhashable {name}") from None
        if name == "process":
            cols.proc_types = set(map(type, values))
        code = np.fromiter(map(codes_of.__getitem__, values), dtype=np.int64,
                           count=len(values))
        cols.obj[name] = obj
        setattr(cols, "pcode" if name == "process" else "fcode", code[at])
    for name in ("key", "node", "meta", "error"):
        cols.obj[name] = _decoded(col(name))[0]
    cols.obj["value"] = _values(col("vint"), col("vlist"), col("vraw"), n)
    cols.final = _numpy(col("final"), False)
    return cols


def _values(vint: Any, vlist: Any, vraw: Any, n: int) -> np.ndarray:
    """The value column: ints as Python ints; a read-set's non-empty list of integer
    literals as an int64 view of one buffer (the spill's and lost-writes' form of it);
    everything else (null and missing: None) decoded from its JSON text by orjson."""
    import pyarrow as pa
    out = np.full(n, None, dtype=object)
    ints = ~vint.is_null().to_numpy(zero_copy_only=False)
    if ints.any():
        out[ints] = _numpy(vint, 0)[ints].astype(object)
    done = ints
    lists = np.flatnonzero(~vlist.is_null().to_numpy(zero_copy_only=False))
    if len(lists):
        done = ints.copy()
        done[_int_lists(vlist, vraw, lists, out)] = True
    if vraw.null_count:  # no text (an int, or no value at all): None already, or done
        done = done | vraw.is_null().to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(~done)
    if len(rest):
        out[rest] = _decoded(vraw.take(pa.array(rest)))[0]
    return out


def _int_lists(vlist: Any, vraw: Any, lists: np.ndarray, out: np.ndarray) -> list[int]:
    """Sets out[i] for the rows `lists` whose cast list is exact and non-empty; returns them.

    The cast is exact only where the text has nothing but integer literals (DuckDB casts 1.5
    to 2 and "1" to 1) none of which overflowed (a null element). An empty list stays for
    the text ([], as orjson makes it)."""
    import pyarrow as pa
    # the texts' bytes as they are in the batch (no copy): the bytes of the batch that
    # are not in an integer list, then the list rows holding one of them
    width = np.int64 if pa.types.is_large_string(vraw.type) else np.int32
    toff = np.frombuffer(vraw.buffers()[1], dtype=width)[
        vraw.offset:vraw.offset + len(vraw) + 1].astype(np.int64)
    data = vraw.buffers()[2]
    if not data[toff[0]:toff[-1]].to_pybytes().translate(None, _INT_LIST_CHARS):
        bad_rows = np.zeros(len(lists), dtype=bool)  # the usual case: one pass in C
    else:
        buf = np.frombuffer(data, dtype=np.uint8)[toff[0]:toff[-1]]
        bad_at = np.flatnonzero(~_INT_LIST_BYTES[buf]) + toff[0]
        bad_row = np.zeros(len(vraw), dtype=bool)
        bad_row[np.searchsorted(toff, bad_at, side="right") - 1] = True
        bad_rows = bad_row[lists]
    # .values and .offsets ignore a slice's offset: offsets index .values as they are
    values = vlist.values
    flat = _numpy(values, 0)
    nulls = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    offsets = vlist.offsets.to_numpy()
    done = []
    for i, a, b, wrong in zip(lists.tolist(), offsets[lists].tolist(),
                              offsets[lists + 1].tolist(), bad_rows.tolist()):
        if wrong or a == b or (nulls is not None and nulls[a:b].any()):
            continue
        out[i] = flat[a:b]
        done.append(i)
    return done
