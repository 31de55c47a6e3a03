"""Lost writes in the set workload: acknowledged adds that the cluster no longer has.

Ops read: f "add" (value = element) and ok f "read-set" (result = the elements; `final` marks
the reads taken after the last heal). An element is identified by (key, element), so a
workload that spreads its sets over several keys is judged per key; reads of key k only
speak about adds to key k.

Per element (DESIGN §5), where "known" is the earliest of the ok add's completion and the
completion of the first read that showed the element:

- lost (anomaly): its add was ok, or some read observed it, yet it is absent from every final
  read invoked after it was known;
- divergent (anomaly): present in some final reads and absent from others (replicas disagree
  after healing);
- unexpected (anomaly): present in a read although never added, or its add failed;
- stale set read (anomaly): absent from a read invoked after it was known, yet present in a
  read invoked later still (the read went to a replica that was behind);
- recovered (count): the add was info but the element is present: it did happen;
- never read (count): the add was ok but no read was invoked after its acknowledgement;
- indeterminate (count): the add was info and the element never showed up.

Without final reads for a key, its read with the latest invocation plays their role
(Jepsen's set-full) -- but only when no final read of that key was even attempted: final reads
that were attempted and failed never hand their role to an older read (that read may predate
writes acknowledged later; judging from it made a dead cluster look valid). Such a key judges
nothing lost; chaos.checkers.evidence makes the verdict "unknown" and names the nodes.

Everything is vectorised over History.pairs; anomaly objects are built for at most
opts["max_anomalies"] elements per kind (default 1000), the stats count them all.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from chaos.checkers._frame import (SegmentedTimes, combine, factorize, flatten, int_array,
                                   best_per_group)
from chaos.checkers.base import Anomaly, CheckResult
from chaos.history.model import OPEN, History

NS_PER_S = 1e9
MAX_FINAL_OPS = 8  # final reads listed per anomaly (there is one per node, usually 3-5)


def _term(meta: Any) -> Any:
    return meta.get("term") if isinstance(meta, dict) else None


class LostWritesChecker:
    """The set workload's lost / divergent / unexpected / stale-read checker."""

    name = "lost-writes"

    def applies(self, history: History) -> bool:
        # Without a set read nothing can be judged lost (and adds alone may be a counter's).
        return bool((history.pairs["f"] == "read-set").any())

    def check(self, history: History, opts: Mapping[str, Any] | None = None) -> CheckResult:
        opts = opts or {}
        cap = int(opts.get("max_anomalies", 1000))
        return _Judge(history.pairs, cap).run(self.name)


class _Judge:
    """One run of the lost-writes check; arrays are per add (a_*), read (r_*), element (e_*).

    Columns are taken as numpy arrays indexed by row positions (no DataFrame copies): at a
    million ops, filtering frames would cost more than the whole judgement.
    """

    def __init__(self, pairs: pd.DataFrame, cap: int):
        self.cap = cap
        self.pairs = pairs
        self._columns: dict[str, np.ndarray] = {}
        f = pairs["f"].to_numpy()
        typ = pairs["type"].to_numpy()
        is_read = f == "read-set"
        self.add_rows = np.flatnonzero(f == "add")
        self.read_rows = np.flatnonzero(is_read & (typ == "ok"))
        self.n_reads_attempted = int(is_read.sum())
        # final reads attempted, whatever their outcome (their keys get no fallback read)
        self.final_rows = np.flatnonzero(is_read & pairs["final"].to_numpy().astype(bool))

    def column(self, name: str) -> np.ndarray:
        """A pairs column as a numpy array (cached: column lookup costs ~10 us each)."""
        if name not in self._columns:
            self._columns[name] = self.pairs[name].to_numpy()
        return self._columns[name]

    def col(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.column(name)[rows]

    # -- encoding ----------------------------------------------------------------------------
    def _encode(self) -> None:
        ar, rr, fr = self.add_rows, self.read_rows, self.final_rows
        na, nr = len(ar), len(rr)
        keys = self.column("key")
        key_codes, self.key_values = factorize(np.concatenate([keys[ar], keys[rr], keys[fr]]))
        self.a_key, self.r_key = key_codes[:na], key_codes[na:na + nr]
        self.f_key = key_codes[na + nr:]
        self.m_read, flat = flatten(self.col("result", rr))
        add_vals = self.col("value", ar)
        m_key = self.r_key[self.m_read]
        all_keys = np.concatenate([self.a_key, m_key])
        ints = int_array(add_vals) if flat.dtype == np.int64 else None
        ids = None
        if ints is not None and len(ints) + len(flat):
            elems = np.concatenate([ints, flat])
            ids = self._dense_ids(elems, all_keys)
            if ids is None:
                lo, hi = int(elems.min()), int(elems.max())
                span = hi - lo + 1
                if span * max(len(self.key_values), 1) < 2 ** 62:  # pack (key, element)
                    ids, packed = pd.factorize(all_keys.astype(np.int64) * span + (elems - lo))
                    self._elem = lambda e: int(packed[e] % span + lo)
                else:
                    codes, uniq = pd.factorize(elems)
                    ids = combine(all_keys, codes)
                    per_id = self._per_id(ids, codes)
                    self._elem = lambda e: int(uniq[per_id[e]])
        if ids is None:
            codes, uniq = factorize(np.concatenate([add_vals, flat.astype(object)]))
            ids = combine(all_keys, codes)
            per_id = self._per_id(ids, codes)
            self._elem = lambda e: uniq[per_id[e]]
        self.a_id, m_id = ids[:na], ids[na:]
        self.n = int(ids.max()) + 1 if len(ids) else 0
        self.e_key = np.zeros(self.n, dtype=np.int64)
        self.e_key[ids] = all_keys
        self.r_inv = self.col("invoke_time", rr)
        self.r_cmp = self.col("complete_time", rr)
        self.r_final = self.col("final", rr).astype(bool)
        self.r_rows = np.arange(nr)
        self.m_id = m_id
        if len(m_id) and self._maybe_duplicates(flat):
            # one membership per (read, element): an element listed twice in a read counts once
            pair = pd.unique(self.m_read * self.n + m_id)
            self.m_read, self.m_id = pair // self.n, pair % self.n

    def _dense_ids(self, elems: np.ndarray, keys: np.ndarray) -> np.ndarray | None:
        """Ids without hashing, for the usual workload: int elements from a dense range, each
        element used under a single key. None when that does not hold (then we hash)."""
        lo, hi = int(elems.min()), int(elems.max())
        span = hi - lo + 1
        if span > 4 * len(elems) + 1024:
            return None
        off = elems - lo
        seen = np.zeros(span, dtype=bool)
        seen[off] = True
        dense = np.cumsum(seen) - 1
        ids = dense[off]
        key_of = np.zeros(int(dense[-1]) + 1, dtype=keys.dtype)
        key_of[ids] = keys
        if not np.array_equal(key_of[ids], keys):  # an element under two keys
            return None
        self._elem = lambda e: int(np.searchsorted(dense, e) + lo)  # first offset with code e
        return ids

    def _per_id(self, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.empty(int(ids.max()) + 1 if len(ids) else 0, dtype=values.dtype)
        out[ids] = values
        return out

    def _maybe_duplicates(self, flat: np.ndarray) -> bool:
        """False when every read's elements are strictly increasing (sorted, as DESIGN §4
        asks), which rules duplicates out without hashing millions of pairs."""
        if flat.dtype != np.int64 or len(flat) < 2:
            return flat.dtype != np.int64
        same_read = self.m_read[1:] == self.m_read[:-1]
        return bool((same_read & (flat[1:] <= flat[:-1])).any())

    def _final_role(self) -> np.ndarray:
        """Flagged final reads; for keys where none was attempted, the read with the latest
        invocation (a key whose final reads all failed gets no stand-in)."""
        role = self.r_final.copy()
        n_keys = len(self.key_values)
        has_final = np.zeros(n_keys, dtype=bool)
        has_final[self.f_key] = True
        missing = ~has_final[self.r_key]
        if missing.any():
            sub = pd.DataFrame({"k": self.r_key[missing], "t": self.r_inv[missing],
                                "i": self.r_rows[missing]})
            last = sub.sort_values(["k", "t", "i"]).groupby("k")["i"].last().to_numpy()
            role[last] = True
        self.flagged = has_final
        return role

    # -- judging -----------------------------------------------------------------------------
    def run(self, name: str) -> CheckResult:
        self._encode()
        n = self.n
        a_typ = self.col("type", self.add_rows)
        a_cmp = self.col("complete_time", self.add_rows)
        has_add = np.zeros(n, bool)
        has_add[self.a_id] = True
        a_ok, a_info, a_fail = (a_typ == "ok"), (a_typ == "info"), (a_typ == "fail")
        e_ok = np.zeros(n, bool)
        e_ok[self.a_id[a_ok]] = True
        e_info = np.zeros(n, bool)
        e_info[self.a_id[a_info]] = True
        e_ack = np.full(n, OPEN, dtype=np.int64)
        np.minimum.at(e_ack, self.a_id[a_ok], a_cmp[a_ok])
        e_add_row = np.full(n, -1, dtype=np.int64)  # the add op describing the element
        rank = np.where(a_ok, 2, np.where(a_info, 1, 0))  # prefer an ok add, then an info one
        ids_of, rows_of = best_per_group(self.a_id, rank)
        e_add_row[ids_of] = rows_of

        m_id, m_read = self.m_id, self.m_read
        n_keys = len(self.key_values)
        present = np.bincount(m_id, minlength=n) > 0
        first_seen = np.full(n, OPEN, dtype=np.int64)
        np.minimum.at(first_seen, m_id, self.r_cmp[m_read])
        known = np.minimum(e_ack, first_seen)
        is_known = known != OPEN

        role = self._final_role()
        in_final = np.bincount(m_id[role[m_read]], minlength=n)
        finals = SegmentedTimes(self.r_key[role], self.r_inv[role], n_keys)
        f_total = finals.count(self.e_key)
        lost = np.zeros(n, dtype=bool)
        cand = np.flatnonzero(is_known & (in_final == 0))  # few: count finals only for them
        lost[cand] = finals.count_le(self.e_key[cand], known[cand]) < f_total[cand]
        divergent = (in_final > 0) & (in_final < f_total) & self.flagged[self.e_key]
        unexpected = present & ~(e_ok | e_info)
        recovered = present & e_info & ~e_ok
        indeterminate = ~present & e_info & ~e_ok

        # Stale: some read of the key invoked after `known` and before the latest read that
        # has the element lacks it. Reads are ranked per key by invocation (lo = how many
        # reads of the key were invoked strictly before), so "reads in (known, last present)"
        # is a difference of ranks and one count per element.
        allr = SegmentedTimes(self.r_key, self.r_inv, n_keys)
        lo = allr.count_lt(self.r_key, self.r_inv)
        m_lo = lo[m_read]
        last_lo = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last_lo, m_id, m_lo)
        c_known = allr.count_le(self.e_key, known)
        m_between = (m_lo >= c_known[m_id]) & (m_lo < last_lo[m_id])
        present_between = np.bincount(m_id[m_between], minlength=n)
        stale = is_known & (last_lo - c_known > present_between)
        key_last_inv = np.full(max(n_keys, 1), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(key_last_inv, self.r_key, self.r_inv)
        never_read = e_ok & (key_last_inv[self.e_key] <= e_ack)

        stats = {
            "attempted": int(has_add.sum()), "acknowledged": int(e_ok.sum()),
            "failed": int((has_add & ~e_ok & ~e_info).sum()),
            "indeterminate": int(indeterminate.sum()), "observed": int(present.sum()),
            "lost": int(lost.sum()), "divergent": int(divergent.sum()),
            "unexpected": int(unexpected.sum()), "stale": int(stale.sum()),
            "recovered": int(recovered.sum()), "never_read": int(never_read.sum()),
            "reads": int(len(self.read_rows)), "reads_attempted": self.n_reads_attempted,
            "final_reads": int(role.sum()), "keys": int(len(self.key_values)),
            "final_reads_attempted": int(len(self.final_rows)),
            "add_ops": int(len(self.add_rows)), "add_ops_failed": int(a_fail.sum()),
        }
        self.e_add_row, self.known, self.role = e_add_row, known, role
        self.lo, self.last_lo, self.c_known = lo, last_lo, c_known
        anomalies: list[Anomaly] = []
        warnings: list[str] = []
        chosen = []
        for kind, mask, build in (("lost", lost, self._lost),
                                  ("divergent", divergent, self._divergent),
                                  ("unexpected", unexpected, self._unexpected),
                                  ("stale", stale, self._stale)):
            ids = np.flatnonzero(mask)
            if len(ids) > self.cap:
                warnings.append(f"{len(ids)} {kind} elements, only the first {self.cap} listed")
            chosen.append((build, ids[: self.cap]))
        if any(len(ids) for _, ids in chosen):
            self._index_members(np.concatenate([ids for _, ids in chosen]))
        for build, ids in chosen:
            anomalies.extend(build(int(e)) for e in ids)
        anomalies.sort(key=lambda a: (a.time if a.time is not None else -1))
        if not len(self.read_rows):
            warnings.append("no ok read-set: nothing can be judged lost")
        return CheckResult(name, not anomalies, anomalies=anomalies, stats=stats,
                           warnings=warnings)

    # -- anomaly builders (only for the few elements that need one) --------------------------
    def _index_members(self, ids: np.ndarray) -> None:
        """Which reads hold each element of `ids` (the few that get an anomaly), found with
        one pass over the memberships instead of sorting all of them."""
        want = np.zeros(self.n, dtype=bool)
        want[ids] = True
        sel = np.flatnonzero(want[self.m_id])
        order = sel[np.argsort(self.m_id[sel], kind="stable")]
        bounds = np.searchsorted(self.m_id[order], np.arange(self.n + 1))
        self._members = (order, bounds)
        self._key_reads = pd.Series(np.arange(len(self.r_key))).groupby(self.r_key).indices

    def _reads_with(self, e: int) -> np.ndarray:
        order, bounds = self._members
        return self.m_read[order[bounds[e]:bounds[e + 1]]]

    def _add(self, row: int, name: str) -> Any:
        """Column `name` of add number `row` (no DataFrame row objects: they are slow)."""
        return self.column(name)[self.add_rows[row]]

    def _read(self, row: int, name: str) -> Any:
        return self.column(name)[self.read_rows[row]]

    def _read_ops(self, rows: Any) -> list[int]:
        out: list[int] = []
        for r in rows:
            out.append(int(self._read(r, "invoke_index")))
            ci = int(self._read(r, "complete_index"))
            if ci >= 0:
                out.append(ci)
        return out

    def _add_facts(self, e: int) -> tuple[list[int], dict[str, Any], str]:
        row = int(self.e_add_row[e])
        details: dict[str, Any] = {"element": self._elem(e)}
        key = self.key_values[self.e_key[e]]
        if key is not None:
            details["key"] = key
        if row < 0:
            return [], details, "never added"
        ci = int(self._add(row, "complete_index"))
        ops = [int(self._add(row, "invoke_index"))] + ([ci] if ci >= 0 else [])
        typ = self._add(row, "type")
        details["add_type"] = typ
        if typ != "ok":
            return ops, details, f"added with outcome {typ}"
        node, term = self._add(row, "node"), _term(self._add(row, "meta"))
        done = int(self._add(row, "complete_time"))
        details.update(acked_by=node, ack_term=term, ack_time=done)
        where = (f" by {node}" if node is not None else "") + (
            f" in term {term}" if term is not None else "")
        return ops, details, f"acknowledged{where} at {done / NS_PER_S:.3f} s"

    def _finals_of(self, e: int) -> np.ndarray:
        rows = self._key_reads.get(self.e_key[e], np.zeros(0, dtype=np.int64))
        return rows[self.role[rows]]

    def _lost(self, e: int) -> Anomaly:
        ops, details, how = self._add_facts(e)
        finals = self._finals_of(e)
        finals = finals[self.r_inv[finals] > self.known[e]]
        if details.get("add_type") != "ok":
            seen = self._reads_with(e)
            first = seen[np.argmin(self.r_cmp[seen])]
            ops += self._read_ops([first])
            how = f"observed by a read at {self.r_cmp[first] / NS_PER_S:.3f} s"
        ops += self._read_ops(finals[:MAX_FINAL_OPS])
        details["final_reads"] = int(len(finals))
        details["known_time"] = int(self.known[e])
        if len(finals):  # the first read that missed it: what acted before it is the suspect
            details["missed_time"] = int(self.r_inv[finals].min())
        return Anomaly("lost-write", f"element {details['element']!r} was {how} but is absent "
                       f"from all {len(finals)} final read(s)", ops=ops, key=details.get("key"),
                       time=int(self.known[e]), details=details)

    def _divergent(self, e: int) -> Anomaly:
        ops, details, how = self._add_facts(e)
        finals = self._finals_of(e)
        has = set(self._reads_with(e).tolist())
        present = [r for r in finals if r in has]
        absent = [r for r in finals if r not in has]
        details.update(present_on=[self._read(r, "node") for r in present],
                       absent_on=[self._read(r, "node") for r in absent])
        if self.known[e] != OPEN and absent:
            details["known_time"] = int(self.known[e])
            details["missed_time"] = int(min(self.r_inv[r] for r in absent))
        ops += self._read_ops((present + absent)[:MAX_FINAL_OPS])
        t = int(self.r_inv[finals].min())
        return Anomaly("divergent", f"element {details['element']!r} ({how}) is present in "
                       f"{len(present)} final read(s) and absent from {len(absent)}: replicas "
                       f"disagree after healing", ops=ops, key=details.get("key"), time=t,
                       details=details)

    def _unexpected(self, e: int) -> Anomaly:
        ops, details, how = self._add_facts(e)
        seen = self._reads_with(e)
        first = seen[np.argmin(self.r_cmp[seen])]
        ops += self._read_ops([first])
        why = ("was never added" if details.get("add_type") is None
               else "had its add fail")
        return Anomaly("unexpected", f"element {details['element']!r}, which {why}, "
                       f"appears in {len(seen)} read(s)", ops=ops, key=details.get("key"),
                       time=int(self.r_cmp[first]), details=details)

    def _stale(self, e: int) -> Anomaly:
        ops, details, how = self._add_facts(e)
        rows = self._key_reads.get(self.e_key[e])
        has = set(self._reads_with(e).tolist())
        lo = self.lo[rows]
        window = rows[(lo >= self.c_known[e]) & (lo < self.last_lo[e])]
        absent = next(r for r in window[np.argsort(self.r_inv[window], kind="stable")]
                      if r not in has)
        later = [r for r in has if self.r_inv[r] > self.r_inv[absent]]
        later_r = min(later, key=lambda r: self.r_inv[r])
        ops += self._read_ops([absent, later_r])
        lag = int(self.r_inv[absent] - self.known[e])
        details.update(lag_ns=lag, absent_read_node=self._read(absent, "node"),
                       present_read_node=self._read(later_r, "node"),
                       known_time=int(self.known[e]), missed_time=int(self.r_inv[absent]))
        return Anomaly("stale-set-read", f"element {details['element']!r} ({how}) is missing "
                       f"from a read invoked {lag / 1e6:.1f} ms after it was known, and present "
                       f"in a later read", ops=ops, key=details.get("key"),
                       time=int(self.r_inv[absent]), details=details)


LOST_WRITES = LostWritesChecker()
