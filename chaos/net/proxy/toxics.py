"""Toxic types: their attributes, how the API validates them, and the JSON they are shown as.

Standard library only (this package runs inside bare `python3` containers). What a toxic *does*
to the bytes of a live link lives in `link.py`; this module is the data model the HTTP API
creates, updates and prints, mirroring Toxiproxy 2.12 (attribute names, defaults, JSON shape).

Where the real server crashes or silently accepts nonsense (negative delays, toxicity > 1,
`slicer` with average_size 0 overflowing the stack), we answer 400 instead: a chaos tool that
injects a different fault than the one asked for is worse than one that refuses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: one hour, in ms: the largest delay we accept (anything above is almost surely a unit mistake)
MAX_MS = 3_600_000

#: type -> {attribute: (min, max)}; every attribute is an integer, zero when not given
SPECS: dict[str, dict[str, tuple[int, int]]] = {
    "latency": {"latency": (0, MAX_MS), "jitter": (0, MAX_MS)},
    "bandwidth": {"rate": (0, 10_000_000)},  # KB/s (1000 bytes); 0 = unlimited, as upstream
    "slow_close": {"delay": (0, MAX_MS)},
    "timeout": {"timeout": (0, MAX_MS)},  # 0 = blackhole forever
    "reset_peer": {"timeout": (0, MAX_MS)},
    "slicer": {
        "average_size": (0, 1 << 30),
        "size_variation": (0, 1 << 30),
        "delay": (0, MAX_MS * 1000),  # µs
    },
    "limit_data": {"bytes": (0, (1 << 63) - 1)},
    "noop": {},
}

STREAMS = ("upstream", "downstream")


class ApiError(Exception):
    """An error the HTTP API reports as `{"error": message, "status": status}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Toxic:
    """One toxic of a proxy. `generation` grows on every update so links re-roll toxicity."""

    name: str
    type: str
    stream: str  # as the client sent it (case kept, as upstream does); compare `direction`
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)
    generation: int = 0

    @property
    def direction(self) -> str:
        """"upstream" (client -> server bytes) or "downstream" (server -> client bytes)."""
        return self.stream.lower()

    def to_json(self) -> dict[str, Any]:
        """The API's Toxic object (key order as Toxiproxy emits it)."""
        tox: float | int = self.toxicity
        if float(tox).is_integer():
            tox = int(tox)
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": tox,
        }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _attributes(type_: str, given: Any, base: dict[str, int]) -> dict[str, int]:
    """Merge `given` into `base`, checking types (400 `bad request body`) and ranges (400)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ApiError(400, "bad request body: attributes must be a JSON object")
    spec = SPECS[type_]
    out = dict(base)
    for key, value in given.items():
        if key not in spec or value is None:
            continue  # unknown keys are ignored, null keeps the value (as upstream)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(
                400,
                f"bad request body: attribute {key} of {type_} must be an integer, "
                f"got {json.dumps(value)}",
            )
        out[key] = value
    for key, (lo, hi) in spec.items():
        if not lo <= out[key] <= hi:
            raise ApiError(
                400, f"invalid attribute {key}={out[key]} for {type_}: must be in [{lo}, {hi}]"
            )
    if type_ == "slicer":
        if out["average_size"] < 1:
            raise ApiError(400, "invalid attribute average_size=0 for slicer: must be >= 1")
        if out["size_variation"] >= out["average_size"]:
            raise ApiError(
                400, "invalid attribute size_variation for slicer: must be < average_size"
            )
    return out


def _toxicity(value: Any, default: float) -> float:
    if value is None:
        return default
    if not _number(value):
        raise ApiError(400, f"bad request body: toxicity must be a number, got {json.dumps(value)}")
    if not 0.0 <= value <= 1.0:
        raise ApiError(400, f"invalid toxicity {value}: must be in [0, 1]")
    return float(value)


def new_toxic(body: Any) -> Toxic:
    """Build a toxic from a POST /proxies/{p}/toxics body, in the upstream order of checks.

    decode -> stream (case-insensitive, "" invalid, null = downstream) -> default name
    `<type>_<stream>` -> type known -> attributes. Name uniqueness is the proxy's check.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "bad request body: expected a JSON object")
    stream = body.get("stream")
    if stream is None:
        stream = "downstream"
    if not isinstance(stream, str) or stream.lower() not in STREAMS:
        raise ApiError(400, "stream was invalid, can be either upstream or downstream")
    type_ = body.get("type")
    if type_ is not None and not isinstance(type_, str):
        raise ApiError(400, "bad request body: type must be a string")
    type_ = type_ or ""
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "bad request body: name must be a string")
    if not name:
        name = f"{type_}_{stream}"
    if type_ not in SPECS:
        raise ApiError(400, "invalid toxic type")
    zero = {key: 0 for key in SPECS[type_]}
    return Toxic(
        name=name,
        type=type_,
        stream=stream,
        toxicity=_toxicity(body.get("toxicity"), 1.0),
        attributes=_attributes(type_, body.get("attributes"), zero),
    )


def update_toxic(toxic: Toxic, body: Any) -> None:
    """Apply a POST/PATCH /proxies/{p}/toxics/{t} body: only attributes (merged) and toxicity.

    Validates everything before changing anything, so a rejected update leaves the toxic as is.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "bad request body: expected a JSON object")
    attributes = _attributes(toxic.type, body.get("attributes"), toxic.attributes)
    toxicity = _toxicity(body.get("toxicity"), toxic.toxicity)
    toxic.attributes = attributes
    toxic.toxicity = toxicity
    toxic.generation += 1
