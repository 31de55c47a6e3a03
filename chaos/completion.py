"""A client's answer -> the completion op the history records (the client contract's rules,
docs/targets.md §6, in one place).

The workload runner calls `completion_of` for every op, in the worker processes and for the
final reads. A result that breaks the contract is a client bug: it is recorded as info (the
op may have happened) with an error naming the rule, so no verdict rests on it and the
history writer never meets a value it cannot hold.
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

__all__ = ["completion_of"]


def completion_of(invoke: Mapping[str, Any], result: Mapping[str, Any] | None,
                  exc: BaseException | None) -> dict[str, Any]:
    """The completion op for `invoke`, from a client's result dict or the exception it raised.

    A missing value means "the invoke's" for writes/adds/cas. A result that breaks the client
    contract (docs/targets.md) is a client bug and becomes info (it may have happened) with
    an error naming the rule, so the verdict cannot rest on it: a type other than
    ok/fail/info, a value or meta that is not JSON (a Python set: the history could not hold
    it), an ok read without "value", an ok read-set whose value is not a list (None or no
    value would otherwise read as "the empty set": every acknowledged add "lost").
    """
    op: dict[str, Any] = {"process": invoke["process"], "type": "info", "f": invoke.get("f"),
                          "key": invoke.get("key")}
    is_read = invoke.get("f") in ("read", "read-set")
    if exc is not None:
        op["value"] = None if is_read else invoke.get("value")
        op["node"] = invoke.get("node")
        op["error"] = f"indeterminate: {type(exc).__name__}: {exc}"[:500]
    else:
        result = result if isinstance(result, Mapping) else {}
        typ = result.get("type")
        op["type"] = typ if typ in ("ok", "fail", "info") else "info"
        op["value"] = (result["value"] if "value" in result
                       else None if is_read else invoke.get("value"))
        node = result.get("node", invoke.get("node"))
        if node is not None:
            op["node"] = node
        if result.get("meta") is not None:
            op["meta"] = result["meta"]
        if result.get("error") is not None:
            op["error"] = str(result["error"])[:500]
        broken = _contract_problem(invoke, result, op)
        if broken:
            op["type"] = "info"
            op["error"] = f"indeterminate: {broken}"[:500]
            if "not JSON" in broken:  # what the history cannot hold is not kept
                op["value"] = None if is_read else invoke.get("value")
                op.pop("meta", None)
    if op.get("node") is None:
        op.pop("node", None)
    if invoke.get("final"):
        op["final"] = True
    return op


def _contract_problem(invoke: Mapping[str, Any], result: Mapping[str, Any],
                      op: Mapping[str, Any]) -> str | None:
    """Which client-contract rule a result breaks (None: it keeps them all)."""
    if result.get("type") not in ("ok", "fail", "info"):
        return f"client returned type {result.get('type')!r:.60}"
    f = invoke.get("f")
    for name in ("value", "meta"):
        if name in op:
            try:
                orjson.dumps(op[name], option=orjson.OPT_NON_STR_KEYS)
            except TypeError as exc:
                return (f"client returned a non-JSON {name} for {f} ({exc}; use lists, "
                        "dicts, str, int, float, bool, None)")
    if result.get("type") == "ok" and f in ("read", "read-set") and "value" not in result:
        return f"ok {f} without a value (an ok read must say what it read)"
    if result.get("type") == "ok" and f == "read-set" and not isinstance(result["value"], list):
        return (f"ok read-set with a value that is not a list ({result['value']!r:.60}); "
                "the empty set is []")
    return None
