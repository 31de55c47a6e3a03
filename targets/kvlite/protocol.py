"""The kvlite wire format and state machine: small, deterministic and stdlib only.

Every message is one JSON object on one line. A request carries an `id` chosen by the
sender and an `op`; the reply carries the same `id`, so one connection can pipeline many
requests and receive replies out of order. Clients, peers and status polls all use this one
format on the node's one port.

Replies have `type`:
- "ok":    the op happened (writes: durable per the replication mode).
- "fail":  the op surely did not happen (cas mismatch, not leader, lease expired before a read).
- "error": unknown outcome or an unusable request; `error` says why. Clients record unknown
           outcomes of writes as "info", never "fail".

Log entries store the *result* of an op, not the op: cas is decided at the leader and logged
as a plain write, so applying entries is deterministic on every replica.
"""
from __future__ import annotations

import json
from typing import Any

#: ops a client may send
CLIENT_OPS = frozenset({"read", "write", "cas", "add", "read-set", "status"})
#: ops only peers send
PEER_OPS = frozenset({"append", "vote", "install-snapshot"})
#: admin ops used by tests and operators
ADMIN_OPS = frozenset({"promote", "step-down", "pause-replication", "snapshot",
                       "reconfigure"})
ALL_OPS = CLIENT_OPS | PEER_OPS | ADMIN_OPS

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


class ProtocolError(ValueError):
    """A request that cannot be understood; the node answers with an error and keeps serving."""


def encode(msg: dict[str, Any]) -> bytes:
    """One message as one line of bytes."""
    return (_dumps(msg) + "\n").encode()


def dumps(obj: Any) -> str:
    """Compact JSON text (shared so the log and the wire agree byte for byte)."""
    return _dumps(obj)


def decode(line: bytes) -> dict[str, Any]:
    """Parse one request line; raises ProtocolError with a reason a human can act on."""
    try:
        msg = _loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a request must be a JSON object")
    return msg


def validate_request(msg: dict[str, Any]) -> str:
    """The op name of a well-formed request, or ProtocolError naming what is wrong."""
    op = msg.get("op")
    if not isinstance(op, str):
        raise ProtocolError("missing field 'op'")
    if op not in ALL_OPS:
        raise ProtocolError(f"unknown op {op!r}")
    if op in ("read", "write", "cas", "add", "read-set"):
        key = msg.get("key")
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise ProtocolError(f"op {op!r} needs a string or integer 'key'")
        if op in ("write", "add") and "value" not in msg:
            raise ProtocolError(f"op {op!r} needs a 'value'")
        if op == "add" and isinstance(msg["value"], (list, dict)):
            raise ProtocolError("op 'add' needs a scalar 'value' (set elements are hashable)")
        if op == "cas":
            v = msg.get("value")
            if not isinstance(v, list) or len(v) != 2:
                raise ProtocolError("op 'cas' needs 'value': [expected, new]")
    return op


# --- the state machine ------------------------------------------------------------------

def apply_entry(state: dict[Any, Any], entry: dict[str, Any]) -> None:
    """Apply one log entry to a state dict in place.

    Entry shapes: {"i", "t", "k", "v"} write; {"i", "t", "k", "a"} add to a set;
    {"i", "t", "n": 1} no-op (a new majority leader's first entry).
    """
    if "v" in entry:
        state[entry["k"]] = entry["v"]
    elif "a" in entry:
        cur = state.get(entry["k"])
        if not isinstance(cur, set):
            cur = set() if cur is None else {cur}
            state[entry["k"]] = cur
        cur.add(entry["a"])


def read_value(state: dict[Any, Any], key: Any) -> Any:
    """A register read: sets come back as sorted lists."""
    v = state.get(key)
    return sorted_set(v) if isinstance(v, set) else v


def read_set(state: dict[Any, Any], key: Any) -> list[Any]:
    """A set read: always a sorted list ([] for a missing key)."""
    v = state.get(key)
    if v is None:
        return []
    return sorted_set(v) if isinstance(v, set) else [v]


def sorted_set(s: set[Any]) -> list[Any]:
    try:
        return sorted(s)
    except TypeError:  # mixed element types: order by their JSON text
        return sorted(s, key=dumps)


def copy_state(state: dict[Any, Any]) -> dict[Any, Any]:
    """A copy whose sets are independent (the committed and head views must never share)."""
    return {k: (set(v) if isinstance(v, set) else v) for k, v in state.items()}


def state_to_json(state: dict[Any, Any]) -> list[list[Any]]:
    """Snapshot form: [[key, value, is_set], ...] (JSON has neither sets nor int keys)."""
    return [[k, sorted_set(v), True] if isinstance(v, set) else [k, v, False]
            for k, v in state.items()]


def state_from_json(items: list[list[Any]]) -> dict[Any, Any]:
    return {k: (set(v) if is_set else v) for k, v, is_set in items}
