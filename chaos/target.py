"""Targets: the replicated systems under test, and the clients the workloads drive.

A target (Jepsen's `db` + `client` factory) knows how to start one node as a foreground
command, how to ask a node for its status, and how to make a client. It knows nothing about
where the node runs: the runtime (chaos.runtime) starts the command locally, in a container or
over SSH, and the net layer (chaos.net) decides which address each node uses to reach each
peer (the proxy mesh puts a proxy on every directed link).

Built-in and third-party targets register in the entry-point group `chaos.targets`; a path
(`--target ./my_target.py`) works too: chaos.targets_registry loads both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class Addr:
    """A TCP address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class NodeConfig:
    """Everything a node needs to start.

    name:     "n1".."nN" (stable; used in histories)
    listen:   the address the node's server binds (its real address)
    peers:    how THIS node reaches each other node (through the a->b proxy when the mesh is on)
    data_dir: directory on the node's host for its log, snapshot and logs
    options:  the target options (-O key=value), already validated
    """

    name: str
    listen: Addr
    peers: dict[str, Addr]
    data_dir: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptionSpec:
    """A target option, for validation and `chaos targets`."""

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    type: type = str


class Client(Protocol):
    """A connection used by ONE logical client process, issuing one op at a time.

    `invoke(op)` takes an invoke dict (f, key, value) and returns the completion fields:
    {"type": "ok"|"fail"|"info", "value": ..., "node": "n2", "meta": {...}, "error": "..."}.
    Return "fail" only when the op surely did not happen; when unsure, "info" (or raise: the
    runner records an exception as info with error "indeterminate: ...").
    """

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class Target(Protocol):
    """One replicated system. Methods are called from the controller, never from nodes."""

    name: str
    options: Mapping[str, OptionSpec]
    #: workloads this target's client supports, e.g. {"register", "set"}
    workloads: frozenset[str]
    #: True when every peer address can be pointed at a proxy (the Toxiproxy mesh works)
    supports_mesh: bool

    def start_command(self, node: NodeConfig) -> list[str]:
        """argv that runs the node in the foreground (the runtime daemonises and signals it)."""
        ...

    def client(self, nodes: Mapping[str, Addr], options: Mapping[str, Any]) -> Client:
        """A client reaching each node at `nodes[name]` (the client->node proxies)."""
        ...

    def status(self, node: str, addr: Addr, timeout: float) -> dict[str, Any]:
        """The node's view: {"role", "term", "leader", ...}; raises on no answer."""
        ...
