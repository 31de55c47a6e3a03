"""Reading a history in byte ranges on several processes (chaos.history.ranges) against one
reader, its oracle: for a cut at every line of small histories, valid and broken, the same
rows or the same refusal (Doubt). What crosses a cut (an open invoke, its completion) is the
part a shortcut could get wrong, so every position is tried, not a sample."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from chaos.history import ranges
from chaos.history.stream import Doubt, split_history

pytestmark = pytest.mark.integration  # forks reader processes


def _ops() -> list[dict[str, Any]]:
    """Two clients with overlapping ops (one op spans many lines), a monitor poll, an info
    completion and an invoke that never completes."""
    ops: list[dict[str, Any]] = []

    def op(**kw: Any) -> None:
        ops.append({"index": len(ops), "time": len(ops) * 10, **kw})
    op(process=0, type="invoke", f="add", key="s0", value=1)
    op(process=1, type="invoke", f="add", key="s0", value=2)
    op(process="monitor", type="invoke", f="status", node="n1")
    op(process=0, type="ok", f="add", key="s0", value=1, node="n1")
    op(process="monitor", type="ok", f="status", node="n1",
       value={"role": "leader", "term": 1, "leader": "n1"})
    op(process=0, type="invoke", f="read-set", key="s0")
    op(process=0, type="ok", f="read-set", key="s0", value=[1], node="n2")
    op(process=1, type="info", f="add", key="s0", value=2, error="timeout")
    op(process=2, type="invoke", f="add", key="s1", value=3)
    op(process=0, type="invoke", f="read-set", key="s0", final=True)
    op(process=2, type="ok", f="add", key="s1", value=3, node="n1")
    op(process=0, type="ok", f="read-set", key="s0", value=[1, 2], node="n1", final=True)
    op(process=2, type="invoke", f="add", key="s1", value=4)
    return ops


def _variants() -> list[tuple[str, list[dict[str, Any]]]]:
    base = _ops()
    out = [("valid", base)]
    for i in range(len(base)):
        out.append((f"line {i} dropped", base[:i] + base[i + 1:]))
    dup = [dict(o) for o in base]
    dup.insert(4, {**base[1], "index": 3, "time": 30})  # process 1 invokes while open
    out.append(("second invoke while open", [{**o, "index": k} for k, o in enumerate(dup)]))
    other_f = [dict(o) for o in base]
    other_f[3]["f"] = "read-set"  # process 0's completion of another f
    out.append(("completion of another f", other_f))
    back = [dict(o) for o in base]
    back[6]["time"] = 1  # time goes backwards
    out.append(("time backwards", back))
    return out


def _rows(path: Path, tmp: Path, workers: int) -> Any:
    try:
        split = split_history(path, tmp, n_shards=2, workers=workers)
    except Doubt:
        return "Doubt"
    rows = [r for i in range(2) for r in split.shard(i).pairs.to_dict("records")]
    rows += split.context_history().pairs.to_dict("records")
    rows.sort(key=lambda r: r["invoke_index"])
    return [json.dumps(r, default=str, sort_keys=True) for r in rows], split.lines, split.ops


@pytest.mark.parametrize("name,ops", _variants(), ids=[n for n, _ in _variants()])
def test_every_cut_same_rows_or_same_doubt(tmp_path: Path, monkeypatch: Any, name: str,
                                           ops: list[dict[str, Any]]) -> None:
    lines = [orjson.dumps(o) + b"\n" for o in ops]
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(lines))
    want = _rows(path, tmp_path / "one", 1)
    offsets = [sum(map(len, lines[:k])) for k in range(len(lines) + 1)]
    for k, cut in enumerate(offsets):
        monkeypatch.setattr(ranges, "boundaries", lambda p, n, cut=cut: [0, cut, offsets[-1]])
        assert _rows(path, tmp_path / f"cut{k}", 2) == want, f"{name}: cut before line {k}"
    for a, b in [(2, 5), (1, 9), (5, 6)]:  # three ranges: an op spanning a whole range
        monkeypatch.setattr(ranges, "boundaries",
                            lambda p, n, a=a, b=b: [0, offsets[a], offsets[b], offsets[-1]])
        assert _rows(path, tmp_path / f"cuts{a}-{b}", 3) == want, f"{name}: cuts {a}, {b}"


def test_boundaries_fall_after_newlines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"a" * 10 + b"\n" + b"b" * 3 + b"\n" + b"c" * 20 + b"\n")
    for n in range(1, 8):
        cuts = ranges.boundaries(path, n)
        assert cuts[0] == 0 and cuts[-1] == path.stat().st_size and len(cuts) == n + 1
        data = path.read_bytes()
        assert all(c == 0 or data[c - 1:c] == b"\n" for c in cuts[:-1]), cuts
        assert cuts == sorted(cuts)
