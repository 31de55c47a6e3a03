"""Human-readable verdicts: what `chaos analyze` prints for a person at a terminal.

One block per history: the merged verdict (when it is unknown, the first line says why: the
first of the run's reasons, else the first undecided checker's), then the remaining reasons,
then per checker its verdict and its anomalies,
each with its kind, message, key, the ops involved (index, time in ms, process, type, f,
value, node) and the explanation tying it to faults and leaders. Long lists are cut (the
full data is in results.json and `--json`), so a big history still gives a readable screen.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from chaos.history.model import History

NS_PER_MS = 1_000_000
MAX_ANOMALIES = 10   # per checker, in the human summary
MAX_OPS = 8          # per anomaly
MAX_VALUE = 60       # characters of a value shown inline
#: unknown_reasons' answer when it knows nothing more specific
NO_VERDICT = "no checker gave a verdict"


def verdict_word(valid: Any) -> str:
    """True -> "valid", False -> "INVALID", anything else -> "UNKNOWN"."""
    if valid is True:
        return "valid"
    if valid is False:
        return "INVALID"
    return "UNKNOWN"


def _short(value: Any) -> str:
    s = repr(value) if not isinstance(value, str) else value
    return s if len(s) <= MAX_VALUE else s[: MAX_VALUE - 3] + "..."


def _ms(ns: Any) -> str:
    return f"{ns / NS_PER_MS:.3f} ms" if isinstance(ns, (int, float)) else "?"


def _proc(p: Any) -> str:
    return f"p{p}" if isinstance(p, int) and not isinstance(p, bool) else str(p)


def describe_op(op: Mapping[str, Any]) -> str:
    """One op line: `#17  12.345 ms  p3 ok write k1=42 @n2`."""
    parts = [f"#{op.get('index')}", f"{_ms(op.get('time')):>12}", _proc(op.get("process")),
             str(op.get("type")), str(op.get("f"))]
    key, value = op.get("key"), op.get("value")
    if key is not None:
        parts.append(f"{_short(key)}={_short(value)}")
    elif value is not None:
        parts.append(_short(value))
    if op.get("node") is not None:
        parts.append(f"@{op['node']}")
    if op.get("error") is not None:
        parts.append(f"error={_short(op['error'])}")
    return "  ".join(parts)


def ops_by_index(ops: Sequence[Mapping[str, Any]], wanted: Iterable[int]
                 ) -> dict[int, Mapping[str, Any]]:
    """The ops whose `index` is in `wanted`.

    Our histories number lines 0, 1, 2, ... so ops[i] is usually op i: try that first (a
    million-op history must not be scanned for the dozen ops a summary shows); scan once
    for the rest (imported histories may number differently).
    """
    found: dict[int, Mapping[str, Any]] = {}
    rest: set[int] = set()
    for i in wanted:
        op = ops[i] if isinstance(i, int) and 0 <= i < len(ops) else None
        if op is not None and op.get("index") == i:
            found[i] = op
        else:
            rest.add(i)
    if rest:
        for op in ops:
            idx = op.get("index")
            if idx in rest:
                found[idx] = op
    return found


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from a CheckResult/Anomaly dataclass or from its dict form."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


#: what an ambiguous stat counts, shown after it (the checkers' docs and docs/verdicts.md
#: have the full rules): "observed" is not "in the final reads"
STAT_GLOSS = {"observed": "seen in any read"}


def _stats_line(stats: Mapping[str, Any]) -> str:
    """The scalar stats, compactly (nested ones are left to results.json)."""
    items = [f"{k}={v}" + (f" ({STAT_GLOSS[k]})" if k in STAT_GLOSS else "")
             for k, v in stats.items()
             if isinstance(v, (int, float, str, bool)) or v is None][:8]
    return ", ".join(items)


def _by_kind(anomalies: Sequence[Any]) -> str:
    """'805 lost-write, 934 divergent' in order of first appearance (one kind: '')."""
    counts: dict[str, int] = {}
    for a in anomalies:
        kind = str(_get(a, "kind"))
        counts[kind] = counts.get(kind, 0) + 1
    if len(counts) < 2:
        return ""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def _shown(anomalies: Sequence[Any], limit: int) -> list[Any]:
    """Up to `limit` anomalies to print: the first of every kind, then the rest in order,
    so a kind with few anomalies is not hidden behind the many of another."""
    firsts: dict[str, int] = {}
    for i, a in enumerate(anomalies):
        firsts.setdefault(str(_get(a, "kind")), i)
    picked = sorted(firsts.values())[:limit]
    rest = (i for i in range(len(anomalies)) if i not in set(picked))
    picked += [i for _, i in zip(range(limit - len(picked)), rest)]
    return [anomalies[i] for i in sorted(picked)]


def unknown_reasons(outcome: Mapping[str, Any]) -> list[str]:
    """Why an outcome is not decided, most telling first: the run-level reasons (evidence
    rules, unverified faults), then per undecided checker its reasons, its crash, or its
    first warning; never empty for an unknown outcome."""
    out = [str(r) for r in outcome.get("reasons") or []]
    for name, r in (outcome.get("results") or {}).items():
        if _get(r, "valid") in (True, False):
            continue
        own = [f"{name}: {x}" for x in _get(r, "reasons") or []]
        if not own and _get(r, "error"):
            own = [f"{name} crashed: {str(_get(r, 'error')).splitlines()[0]}"]
        if not own and _get(r, "warnings"):
            own = [f"{name}: {_get(r, 'warnings')[0]}"]
        out += own or [f"{name} could not decide"]
    if not out and outcome.get("valid") not in (True, False):
        out.append(NO_VERDICT)
    return out


def format_summary(path: str, outcome: Mapping[str, Any], history: History | Any = None,
                   fmt: str | None = None) -> str:
    """The text block for one analysed history (`outcome` as run_checkers returns it)."""
    by_index: dict[int, Mapping[str, Any]] = {}
    if history is not None:
        wanted = {i for r in outcome.get("results", {}).values()
                  for a in _shown(_get(r, "anomalies") or [], MAX_ANOMALIES)
                  for i in (_get(a, "ops") or [])[:MAX_OPS]}
        by_index = ops_by_index(history.ops, wanted)
    results = outcome.get("results", {})
    n_ops = history.n_ops if history is not None else None
    head = f"{path}: {verdict_word(outcome.get('valid'))}"
    extra = [x for x in (fmt and f"format {fmt}", n_ops is not None and f"{n_ops} ops",
                         f"{len(results)} checkers") if x]
    why = unknown_reasons(outcome) if verdict_word(outcome.get("valid")) == "UNKNOWN" else []
    lines = [f"{head}  ({', '.join(extra)})" + (f": {why[0]}" if why else "")]
    # the run's other reasons; a checker's own reasons are listed under that checker
    lines += [f"  also unknown because: {w}" for w in outcome.get("reasons") or []
              if why and w != why[0]]
    lines += [f"  warning: {w}" for w in outcome.get("warnings", [])]
    width = max((len(n) for n in results), default=0)
    for name, r in results.items():
        anomalies = _get(r, "anomalies") or []
        real = [a for a in anomalies if _get(a, "severity", "anomaly") == "anomaly"]
        warns = len(anomalies) - len(real)
        note = []
        # a checker that caps its list says so in a warning ("N lost elements, only the
        # first C listed"): then results.json holds the list, the stats hold the counts
        capped = any("only the first" in str(w) for w in _get(r, "warnings") or [])
        if real:
            kinds = _by_kind(real)
            note.append(f"{len(real)} anomal{'y' if len(real) == 1 else 'ies'}"
                        + (" listed (capped, see the warning)" if capped else "")
                        + (f" ({kinds})" if kinds else ""))
        if warns:
            note.append(f"{warns} warning{'s' if warns != 1 else ''}")
        stats = _stats_line(_get(r, "stats") or {})
        if stats:
            note.append(stats)
        lines.append(f"  {name:<{width}}  {verdict_word(_get(r, 'valid')):<8} {'; '.join(note)}")
        if _get(r, "error"):
            lines.append(f"    checker crashed: {str(_get(r, 'error')).splitlines()[0]}")
        for w in _get(r, "reasons") or []:
            lines.append(f"    unknown because: {w}")
        for w in _get(r, "warnings") or []:
            lines.append(f"    warning: {w}")
        for a in _shown(anomalies, MAX_ANOMALIES):
            lines += _anomaly_lines(a, by_index)
        if len(anomalies) > MAX_ANOMALIES:
            where = (f"in results.json / --json (they hold the {len(anomalies)} listed; the "
                     "stats count every one)" if capped
                     else "(all of them are in results.json / --json)")
            lines.append(f"    ... and {len(anomalies) - MAX_ANOMALIES} more {where}")
    return "\n".join(lines)


def _anomaly_lines(a: Any, by_index: Mapping[int, Mapping[str, Any]]) -> list[str]:
    sev = _get(a, "severity", "anomaly")
    key = _get(a, "key")
    head = f"    - {_get(a, 'kind')}{' (warning)' if sev == 'warning' else ''}"
    if key is not None:
        head += f" [key {_short(key)}]"
    if _get(a, "time") is not None:
        head += f" at {_ms(_get(a, 'time'))}"
    out = [head, f"      {_get(a, 'message')}"]
    ops = _get(a, "ops") or []
    for i in ops[:MAX_OPS]:
        op = by_index.get(i)
        out.append(f"        {describe_op(op) if op else f'#{i}'}")
    if len(ops) > MAX_OPS:
        out.append(f"        ... {len(ops) - MAX_OPS} more ops")
    if _get(a, "explanation"):
        for j, text in enumerate(str(_get(a, "explanation")).splitlines()):
            out.append(f"      {'why: ' if j == 0 else '     '}{text}")
    return out
