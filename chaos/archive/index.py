"""The store's index: one summary line per run in store/index.jsonl.

A nightly store holds thousands of runs; reading every results.json on each page view would
make `chaos serve` slower with every night. So each run appends its summary (verdict, config,
anomaly counts per kind, throughput, latency) to the index when it finishes (`record_run`,
called by chaos.run), and readers load the index once and then only the lines appended since
(`Index.refresh`: one stat per request). An index that is missing or out of step with the
store (runs copied in, deleted, recorded by an older chaos) is brought in line by `sync`,
which lists run directory names only and summarises just the runs it lacks.

Appends are single `write` calls on an O_APPEND descriptor, so runs finishing at once in the
same store never interleave their lines. A later line for the same run replaces an earlier.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson

from chaos.report.results import verdict_word

INDEX_NAME = "index.jsonl"
#: a run directory's name: the UTC start stamp chaos.store.new_run_dir gives, maybe "-N"
STAMP = re.compile(r"^(\d{8}T\d{6})(?:-\d+)?$")


@dataclass
class RunSummary:
    """What the archive shows of one run (one index line). `id` is "<test>/<stamp>"."""

    id: str
    test: str
    started: str                       # ISO 8601 UTC
    verdict: str                       # valid | invalid | unknown
    exit_code: int | None = None
    target: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    workload: str = ""
    nemesis: list[str] = field(default_factory=list)
    seed: int | None = None
    runtime: str | None = None
    nodes: int | None = None
    time_limit: float | None = None
    faults: int = 0                    # fault events in the schedule
    duration_s: float | None = None
    ops: int | None = None
    ops_per_s: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)   # p50, p95, p99, max
    anomalies: dict[str, int] = field(default_factory=dict)      # kind -> count
    reasons: list[str] = field(default_factory=list)             # why unknown
    mtime: float = 0.0                 # results.json's (or config.json's) mtime when read

    @functools.cached_property
    def config_key(self) -> str:
        """The configuration a trend follows: target, options, workload and nemesis."""
        return config_key(self.target, self.options, self.workload, self.nemesis)

    @functools.cached_property
    def search_text(self) -> str:
        """What the run list's search box matches (lower case): id, config, seed, kinds."""
        return f"{self.id} {self.config_key} seed={self.seed} {' '.join(self.anomalies)}".lower()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSummary:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def config_key(target: str, options: Mapping[str, Any], workload: str,
               nemesis: Iterable[str]) -> str:
    """"kvlite -O failover=naive -O replication=async set partition": one string per config."""
    opts = " ".join(f"-O {k}={_opt(v)}" for k, v in sorted(options.items()))
    return " ".join(p for p in (target, opts, workload, ",".join(nemesis) or "none") if p)


def _opt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _read(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _started(name: str, config: Mapping[str, Any]) -> str:
    m = STAMP.match(name)
    if m:
        s = m.group(1)
        return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"
    return str((config.get("versions") or {}).get("time") or "")


def summarize(run_dir: Path, run_id: str | None = None) -> RunSummary | None:
    """The summary of one run directory, or None when it holds no config.json (not a run).

    A run without results.json (crashed, interrupted, still running) is "unknown" with that
    reason: never shown as valid.
    """
    run_dir = Path(run_dir)
    doc = _read(run_dir / "config.json")
    if not isinstance(doc, dict):
        return None
    cfg: dict[str, Any] = doc["config"] if isinstance(doc.get("config"), dict) else {}
    run_id = run_id or f"{run_dir.parent.name}/{run_dir.name}"
    results = _read(run_dir / "results.json")
    base = run_dir / ("results.json" if isinstance(results, dict) else "config.json")
    mtime = 0.0
    with contextlib.suppress(OSError):
        mtime = base.stat().st_mtime
    s = RunSummary(
        id=run_id, test=run_dir.parent.name, started=_started(run_dir.name, doc),
        verdict="unknown", target=os.path.basename(str(cfg.get("target") or "")).removesuffix(
            ".py"),
        options=dict(cfg.get("target_options") or {}), workload=str(cfg.get("workload") or ""),
        nemesis=[str(n) for n in cfg.get("nemesis") or []], seed=cfg.get("seed"),
        runtime=cfg.get("runtime"), nodes=cfg.get("nodes"), time_limit=cfg.get("time_limit"),
        faults=len(cfg.get("schedule") or []), mtime=mtime)
    if not isinstance(results, dict):
        s.reasons = ["no results.json: the run crashed, was interrupted or is still running"]
        return s
    s.verdict = verdict_word(results.get("valid"))
    s.exit_code = results.get("exit_code")
    s.ops = results.get("ops")
    s.reasons = [str(r) for r in results.get("reasons") or []][:3]
    for name, res in (results.get("results") or {}).items():
        if not isinstance(res, dict):
            continue
        listed: dict[str, int] = {}
        for a in res.get("anomalies") or []:
            if isinstance(a, dict) and a.get("severity", "anomaly") == "anomaly":
                kind = str(a.get("kind") or name)
                listed[kind] = listed.get(kind, 0) + 1
        for kind, n in listed.items():
            s.anomalies[kind] = s.anomalies.get(kind, 0) + _exact_count(kind, n, res)
        if name == "perf":
            stats = res.get("stats") or {}
            s.duration_s = stats.get("duration_s")
            s.ops_per_s = stats.get("throughput_per_s")
            lat = (stats.get("latency_ms") or {}).get("all") or {}
            s.latency_ms = {q: lat[q] for q in ("p50", "p95", "p99", "max") if q in lat}
    return s


def _exact_count(kind: str, listed: int, result: Mapping[str, Any]) -> int:
    """How many anomalies of `kind` a checker found: checkers list at most a cap of them
    (lost-writes: 1000) but count all in their stats ("lost-write" -> stats "lost",
    "same-term-leaders" -> "same_term_leaders"); the listed number when no count matches."""
    stats = result.get("stats") or {}
    for key in (kind.replace("-", "_"), kind.split("-")[0]):
        n = stats.get(key)
        if isinstance(n, int) and not isinstance(n, bool) and n >= listed:
            return n
    return listed


def run_dirs(store: Path) -> Iterable[tuple[str, Path]]:
    """(id, path) of every run directory in the store: store/<test>/<stamp>/ holding a
    config.json. Lists names only (the `latest` links and dot files are skipped)."""
    store = Path(store)
    try:
        tests = sorted(os.scandir(store), key=lambda e: e.name)
    except OSError:
        return
    for test in tests:
        if test.name.startswith(".") or test.is_symlink() or not test.is_dir():
            continue
        for run in sorted(os.scandir(test.path), key=lambda e: e.name):
            if run.is_symlink() or not STAMP.match(run.name) or not run.is_dir():
                continue
            yield f"{test.name}/{run.name}", Path(run.path)


def record_run(run_dir: Path) -> None:
    """Append the run's summary to its store's index (store = run_dir/../..).

    Never raises: an index that cannot be written only costs a rescan later (`sync`).
    """
    run_dir = Path(run_dir)
    with contextlib.suppress(Exception):
        summary = summarize(run_dir)
        if summary is not None:
            append(run_dir.parent.parent / INDEX_NAME, [summary])


def append(path: Path, summaries: Iterable[RunSummary]) -> None:
    data = b"".join(orjson.dumps(s.to_dict()) + b"\n" for s in summaries)
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class Index:
    """The runs of one store, in memory, kept up to date from store/index.jsonl."""

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.store = Path(store)
        self.path = self.store / INDEX_NAME
        self.runs: dict[str, RunSummary] = {}
        self._offset = 0
        self._ino: int | None = None
        self.version = 0          # bumped whenever `runs` changes (caches key on it)

    def refresh(self) -> None:
        """Read the lines appended since the last call (one stat when nothing changed); a
        replaced index file (rebuilt by `sync --reindex`) is read again from the start."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_ino != self._ino or st.st_size < self._offset:
            self.runs, self._offset, self._ino = {}, 0, st.st_ino
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1       # a line being written is read next time, whole
        for line in data[:end].splitlines():
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                s = RunSummary.from_dict(orjson.loads(line))
                self.runs[s.id] = s
        self._offset += end
        self.version += 1

    def sync(self, reindex: bool = False) -> tuple[int, int]:
        """Make the index match the run directories: summarise the runs it lacks (or whose
        results.json changed since: one stat per run), drop the ones gone; `reindex`
        rebuilds it all.
        Returns (runs added or updated, runs dropped). Rewrites the file atomically."""
        self.refresh()
        known = {} if reindex else dict(self.runs)
        found = dict(run_dirs(self.store))
        fresh: list[RunSummary] = []
        for run_id, path in found.items():
            old = known.get(run_id)
            # a summary stands while its results.json is the one it was read from (one stat:
            # re-checked by `chaos analyze`, or appeared since a crash, means read it again)
            try:
                mtime: float | None = (path / "results.json").stat().st_mtime
            except OSError:
                mtime = None
            if old is not None and (old.mtime == mtime if old.exit_code is not None
                                    else mtime is None):
                continue
            s = summarize(path, run_id)
            if s is not None:
                fresh.append(s)
        gone = [r for r in known if r not in found]
        if not fresh and not gone and self.path.exists():
            return 0, 0
        keep = {r: s for r, s in known.items() if r in found}
        keep.update({s.id: s for s in fresh})
        tmp = self.path.with_name(f".{INDEX_NAME}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        append(tmp, sorted(keep.values(), key=lambda s: (s.started, s.id)))
        tmp.touch()
        os.replace(tmp, self.path)
        self.refresh()
        return len(fresh), len(gone)


__all__ = ["INDEX_NAME", "Index", "RunSummary", "config_key", "record_run", "run_dirs",
           "summarize"]
