"""The durable replication log of one node: append-only, checksummed, with a snapshot.

Files in the node's data directory:
- log.jsonl      one entry per line: `<crc32 as 8 hex digits> <entry JSON>\\n`
- snapshot.json  the committed state at some index (written atomically: tmp + rename)
- meta.json      the persisted term, vote and last known leader (atomic, fsynced)

Start-up reads the snapshot, then the log; the first line that is truncated, fails its
checksum, is not JSON or breaks index continuity ends the log: the file is truncated there
and the problem is returned as `recovery` (the node logs it to node.log and shows it in
status). Nothing is dropped silently.

Appends are written at once and flushed in one batch per event-loop turn (group commit):
`durable()` returns a future that resolves when everything appended so far is flushed (and
fsynced with fsync=always). Entries are kept in memory with their encoded text, so sending
them to followers costs no re-encoding.
"""
from __future__ import annotations

import asyncio
import json
import os
import zlib
from typing import Any

from .protocol import dumps, state_from_json, state_to_json


class DurableLog:
    """Entries after the snapshot, in memory and on disk. Indexes start at 1."""

    def __init__(self, data_dir: str, fsync: bool):
        self.dir = data_dir
        self.fsync = fsync
        self.path = os.path.join(data_dir, "log.jsonl")
        self.snap_path = os.path.join(data_dir, "snapshot.json")
        self.meta_path = os.path.join(data_dir, "meta.json")
        self.snapshot_index = 0
        self.snapshot_term = 0
        self.snapshot_state: list[list[Any]] = []
        #: the voters as of the snapshot (config.py); None: the start-up configuration
        self.snapshot_config: list[str] | None = None
        self.entries: list[dict[str, Any]] = []
        self.raw: list[str] = []          # encoded entry JSON, parallel to entries
        self.offsets: list[int] = []      # file offset where each entry's line starts
        self.recovery: dict[str, Any] | None = None
        self._file: Any = None
        self._pending: list[Any] = []  # futures or callbacks
        self._flush_scheduled = False
        #: last index known flushed (fsynced with fsync=always); the leader's own "ack"
        self.durable_index = 0

    # --- start-up -----------------------------------------------------------------------

    def open(self) -> None:
        """Load snapshot and log, truncating a damaged tail (reported in `recovery`)."""
        os.makedirs(self.dir, exist_ok=True)
        if os.path.exists(self.snap_path):
            with open(self.snap_path, encoding="utf-8") as f:
                snap = json.load(f)
            self.snapshot_index = snap["index"]
            self.snapshot_term = snap["term"]
            self.snapshot_state = snap["state"]
            self.snapshot_config = snap.get("config")
        good_end = 0
        problem = None
        dropped_lines = 0
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                data = f.read()
            pos = 0
            expect = self.snapshot_index + 1
            while pos < len(data):
                nl = data.find(b"\n", pos)
                if nl < 0:
                    problem = f"truncated last entry ({len(data) - pos} bytes, no newline)"
                    dropped_lines += 1
                    break
                line = data[pos:nl]
                entry = self._parse(line)
                if isinstance(entry, str):
                    problem = entry
                    dropped_lines += data.count(b"\n", pos) + (0 if data.endswith(b"\n") else 1)
                    break
                if entry["i"] < expect:      # left over from before a compaction: skip
                    pos = nl + 1
                    good_end = pos
                    continue
                if entry["i"] != expect:
                    problem = f"index gap: expected {expect}, found {entry['i']}"
                    dropped_lines += data.count(b"\n", pos)
                    break
                self.offsets.append(pos)
                self.entries.append(entry)
                self.raw.append(line[9:].decode())
                expect += 1
                pos = nl + 1
                good_end = pos
            if problem:
                self.recovery = {
                    "problem": problem,
                    "truncated_at_byte": good_end,
                    "bytes_dropped": len(data) - good_end,
                    "entries_dropped": dropped_lines,
                    "last_good_index": self.last_index,
                }
                with open(self.path, "r+b") as f:
                    f.truncate(good_end)
                    f.flush()
                    os.fsync(f.fileno())
        self._file = open(self.path, "ab", buffering=1 << 16)
        self.durable_index = self.last_index

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | str:
        """An entry, or the reason the line is damaged."""
        if len(line) < 10 or line[8:9] != b" ":
            return "malformed entry line"
        body = line[9:]
        try:
            crc = int(line[:8], 16)
        except ValueError:
            return "malformed checksum"
        if zlib.crc32(body) != crc:
            return "checksum mismatch"
        try:
            entry = json.loads(body)
        except ValueError:
            return "entry is not JSON"
        if not isinstance(entry, dict) or not isinstance(entry.get("i"), int):
            return "entry has no index"
        return entry

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    # --- reading ------------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1]["t"] if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at `index` (the snapshot's term at its index; None if unknown)."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1]["t"]

    def entry(self, index: int) -> dict[str, Any]:
        return self.entries[index - self.snapshot_index - 1]

    def slice_raw(self, start: int, limit: int) -> list[str]:
        """Encoded entries from `start` (> snapshot_index), at most `limit` of them."""
        lo = start - self.snapshot_index - 1
        return self.raw[lo:lo + limit]

    def entries_from(self, start: int) -> list[dict[str, Any]]:
        return self.entries[max(0, start - self.snapshot_index - 1):]

    # --- writing ------------------------------------------------------------------------

    def append(self, entry: dict[str, Any], raw: str | None = None) -> None:
        """Append one entry (its `i` must be last_index + 1). Durable after `durable()`."""
        if raw is None:
            raw = dumps(entry)
        body = raw.encode()
        self.offsets.append(self._file.tell())
        self._file.write(b"%08x %s\n" % (zlib.crc32(body), body))
        self.entries.append(entry)
        self.raw.append(raw)

    def durable(self) -> asyncio.Future[None]:
        """A future resolved once everything appended so far is flushed (group commit)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append(fut)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def after_flush(self, callback: Any) -> None:
        """Call `callback()` once everything appended so far is flushed (no future, no hop)."""
        self._pending.append(callback)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self.durable_index = self.last_index
        for fut in pending:
            if isinstance(fut, asyncio.Future):
                if not fut.done():
                    fut.set_result(None)
            else:
                fut()

    def truncate_after(self, index: int) -> list[dict[str, Any]]:
        """Drop every entry after `index` (>= snapshot_index); returns the dropped entries."""
        keep = index - self.snapshot_index
        dropped = self.entries[keep:]
        if not dropped:
            return []
        self._file.flush()
        self._file.truncate(self.offsets[keep])
        self._file.seek(self.offsets[keep])
        del self.entries[keep:], self.raw[keep:], self.offsets[keep:]
        self.durable_index = min(self.durable_index, index)
        return dropped

    def install_snapshot(self, index: int, term: int, state_json: list[list[Any]],
                         config: list[str] | None = None) -> None:
        """Replace everything with a snapshot (a new or far-behind follower's bootstrap)."""
        self._write_snapshot(index, term, state_json, config)
        self.entries, self.raw, self.offsets = [], [], []
        self._rewrite_log()
        self.durable_index = index

    def compact(self, index: int, term: int, state: dict[Any, Any],
                config: list[str] | None = None) -> None:
        """Snapshot the committed state (and the configuration) at `index`; drop the log
        up to it."""
        cut = index - self.snapshot_index
        self._write_snapshot(index, term, state_to_json(state), config)
        self.entries = self.entries[cut:]
        self.raw = self.raw[cut:]
        self._rewrite_log()

    def _write_snapshot(self, index: int, term: int, state_json: list[list[Any]],
                        config: list[str] | None) -> None:
        tmp = self.snap_path + ".tmp"
        snap: dict[str, Any] = {"index": index, "term": term, "state": state_json}
        if config is not None:
            snap["config"] = config
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dumps(snap))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.snap_path)
        self.snapshot_index, self.snapshot_term, self.snapshot_state = index, term, state_json
        self.snapshot_config = config

    def _rewrite_log(self) -> None:
        """Write the remaining entries to a fresh log file and swap it in atomically."""
        self._file.flush()
        self._file.close()
        tmp = self.path + ".tmp"
        self.offsets = []
        with open(tmp, "wb") as f:
            for raw in self.raw:
                body = raw.encode()
                self.offsets.append(f.tell())
                f.write(b"%08x %s\n" % (zlib.crc32(body), body))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab", buffering=1 << 16)

    def snapshot_state_dict(self) -> dict[Any, Any]:
        return state_from_json(self.snapshot_state)

    # --- term / vote --------------------------------------------------------------------

    def load_meta(self) -> dict[str, Any]:
        if not os.path.exists(self.meta_path):
            return {}
        try:
            with open(self.meta_path, encoding="utf-8") as f:
                meta = json.load(f)
            return meta if isinstance(meta, dict) else {}
        except ValueError:
            return {"damaged": True}

    def save_meta(self, meta: dict[str, Any]) -> None:
        """Persist term/vote before acting on them (atomic replace, always fsynced)."""
        tmp = self.meta_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)
