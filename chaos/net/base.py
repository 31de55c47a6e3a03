"""The net backend protocol, the backends' capabilities, and the choice `--net auto` makes.

A net backend decides how node a reaches node b (`NetSetup.peer`), how the clients reach
each node (`NetSetup.client`), and applies the network faults (`NetSetup.faults`, a
`NetFaults`). The backends:

    proxy        explicit Toxiproxy mesh: each node is given proxy addresses as its peers
                 (target.supports_mesh); local and docker runtimes; no root
    transparent  the same proxies, but nodes are given their peers' REAL addresses and an
                 iptables nat rule in each node's network namespace steers a->b:port into
                 the proxy for that link (runtime capability "nat": docker with NET_ADMIN);
                 works for any TCP target
    iptables     DROP rules inside the nodes (runtime capability "nat"): partitions and
                 one-way cuts only
    none         nodes and clients use the real addresses; no network faults

Capabilities name the fault kinds a backend can apply; the nemesis refuses (before the run
starts) a schedule needing one the chosen backend lacks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaos.errors import BadInput
from chaos.target import MAIN, Addr, Endpoints

#: every capability a backend may have
CAPABILITIES = ("partition", "one-way", "drop", "latency", "jitter", "bandwidth", "reset",
                "client-placement", "evidence")


class NetFaults(Protocol):
    """What the faults (chaos.faults) call on a network backend.

    Links are (src, dst) node pairs; a fault on a pair acts on every named port of dst.
    Every method returns a JSON-able dict of what it did (recorded in the history).
    """

    backend: str
    capabilities: frozenset[str]

    def partition(self, groups: list[list[str]], mode: str = "refuse") -> dict[str, Any]: ...
    def cut(self, src: str, dst: str) -> dict[str, Any]: ...
    def latency(self, links: Any, ms: int, jitter_ms: int = 0) -> dict[str, Any]: ...
    def bandwidth(self, links: Any, rate_kb: int) -> dict[str, Any]: ...
    def reset(self, links: Any = None) -> dict[str, Any]: ...
    def heal(self) -> dict[str, Any]: ...
    def verify(self) -> list[str]: ...
    def traffic(self) -> dict[tuple[str, str], int] | None:
        """Bytes + connections per node link since setup; None when unmeasured."""
        ...
    def bypass(self) -> list[str]:
        """Node-to-node connections seen right now that do not pass through the faults."""
        ...
    def teardown(self) -> None: ...


@dataclass(frozen=True)
class BackendInfo:
    """One backend: what it can do and what it needs."""

    name: str
    capabilities: frozenset[str]
    #: containers need NET_ADMIN (DockerRuntime(net_admin=True)); SSH hosts need root
    needs_net_admin: bool
    #: the target's peers must be pointable at proxy addresses (target.supports_mesh)
    needs_mesh_target: bool
    #: runtime capabilities required ("nat")
    needs_runtime: frozenset[str]
    #: runtimes where the proxies can be placed so that the nodes reach them
    runtimes: frozenset[str]
    summary: str
    #: runtimes where `--net auto` may pick it (ssh: only when asked, since the hosts must be
    #: able to dial the controller, which hosts the proxies there)
    auto_runtimes: frozenset[str] = frozenset({"local", "docker", "ssh"})

    def problem(self, target: Any, runtime: str, caps: frozenset[str]) -> str | None:
        """Why this backend cannot serve `target` on `runtime`, or None when it can."""
        if runtime not in self.runtimes:
            return f"--net {self.name} is not available on --runtime {runtime} " \
                   f"(only {', '.join(sorted(self.runtimes))})"
        if self.needs_mesh_target and not getattr(target, "supports_mesh", True):
            return (f"--net {self.name}: target {getattr(target, 'name', '?')} cannot be given "
                    "proxy addresses as peers (supports_mesh is False)")
        missing = self.needs_runtime - caps
        if missing:
            return (f"--net {self.name} needs the runtime capability "
                    f"{', '.join(sorted(missing))}, which --runtime {runtime} lacks")
        return None


_PROXY_FAULTS = frozenset({"partition", "one-way", "drop", "latency", "jitter", "bandwidth",
                           "reset", "client-placement", "evidence"})

BACKENDS: dict[str, BackendInfo] = {
    "proxy": BackendInfo(
        "proxy", _PROXY_FAULTS, False, True, frozenset(), frozenset({"local", "docker", "ssh"}),
        "explicit Toxiproxy mesh: peers are given proxy addresses (no root)",
        frozenset({"local", "docker"})),
    "transparent": BackendInfo(
        "transparent", _PROXY_FAULTS, True, False, frozenset({"nat"}),
        frozenset({"docker", "ssh"}),
        "Toxiproxy mesh behind nat rules: peers keep their real addresses (any TCP target)",
        frozenset({"docker"})),
    "iptables": BackendInfo(
        "iptables", frozenset({"partition", "one-way", "evidence"}), True, False,
        frozenset({"nat"}), frozenset({"docker", "ssh"}),
        "DROP rules in the nodes: partitions and one-way cuts only, no latency"),
    "none": BackendInfo(
        "none", frozenset(), False, False, frozenset(), frozenset({"local", "docker", "ssh"}),
        "real addresses, no network faults"),
}

#: `--net auto` tries these in order
AUTO_ORDER = ("proxy", "transparent", "iptables", "none")
NET_CHOICES = ("auto",) + tuple(BACKENDS)

#: what each runtime can do when asked (docker: nat with NET_ADMIN; ssh: nat as root)
_RUNTIME_CAPS = {"local": frozenset(), "docker": frozenset({"nat", "own-address"}),
                 "ssh": frozenset({"nat", "own-address"})}


def runtime_caps(runtime: Any) -> tuple[str, frozenset[str]]:
    """(name, capabilities) of a runtime given by name, class or instance."""
    if isinstance(runtime, str):
        return runtime, _RUNTIME_CAPS.get(runtime, frozenset())
    name = getattr(runtime, "name", "?")
    caps = getattr(runtime, "capabilities", None)
    if caps is None:
        caps = _RUNTIME_CAPS.get(name, frozenset())
    return name, frozenset(caps)


def choose_backend(requested: str, target: Any, runtime: Any,
                   needs: frozenset[str] | set[str] = frozenset()) -> str:
    """The backend name for `--net requested` (auto: the best one allowed).

    `needs` are the capabilities the fault schedule uses (e.g. {"partition", "latency"});
    auto picks the first backend of AUTO_ORDER that the target and the runtime allow and that
    has them all (with no needs: "proxy" when possible, else "none"). An impossible request
    is BadInput naming why.
    """
    name, caps = runtime_caps(runtime)
    needs = frozenset(needs)
    if requested == "auto":
        reasons = []
        for cand in AUTO_ORDER:
            info = BACKENDS[cand]
            why = info.problem(target, name, caps)
            if why is None and name not in info.auto_runtimes:
                why = f"--net {cand} on --runtime {name} only when asked for"
            if why is None and not needs <= info.capabilities:
                why = f"--net {cand} cannot do {', '.join(sorted(needs - info.capabilities))}"
            if why is None:
                return cand
            reasons.append(why)
        raise BadInput("--net auto: no backend can apply these faults: " + "; ".join(reasons))
    chosen = BACKENDS.get(requested)
    if chosen is None:
        raise BadInput(f"--net: unknown backend {requested!r}; "
                       f"choose from {', '.join(NET_CHOICES)}")
    why = chosen.problem(target, name, caps)
    if why is None and not needs <= chosen.capabilities:
        lacking = ", ".join(sorted(needs - chosen.capabilities))
        why = (f"--net {requested} cannot do {lacking} (it can: "
               f"{', '.join(sorted(chosen.capabilities)) or 'no network faults'})")
    if why is not None:
        raise BadInput(why)
    return requested


def describe_backends(target: Any = None, runtimes: tuple[str, ...] = ("local", "docker", "ssh"),
                      brief: bool = False) -> list[str]:
    """One line per backend: what it can do and, for `target`, on which runtimes it applies.

    For `chaos run --help` (no target: the general rules) and `chaos targets` (per target;
    brief: one line, the runtimes each backend applies on and what auto picks).
    """
    if brief and target is not None:
        parts = []
        for name, info in BACKENDS.items():
            ok = [r for r in runtimes if info.problem(target, r, runtime_caps(r)[1]) is None]
            if ok:
                parts.append(f"{name} ({', '.join(ok)})")
        auto = ", ".join(f"{r} -> {_auto_or_none(target, r)}" for r in runtimes)
        return [f"{'; '.join(parts)}; auto: {auto}"]
    lines = []
    for name, info in BACKENDS.items():
        if target is None:
            where = ", ".join(sorted(info.runtimes))
        else:
            ok = [r for r in runtimes if info.problem(target, r, runtime_caps(r)[1]) is None]
            where = ", ".join(ok) if ok else "not for this target"
        caps = ", ".join(c for c in CAPABILITIES if c in info.capabilities) or "no faults"
        lines.append(f"{name} ({where}): {caps}")
    if target is not None:
        picks = {r: _auto_or_none(target, r) for r in runtimes}
        lines.append("auto picks: " + ", ".join(f"{r} -> {b}" for r, b in picks.items()))
    return lines


def _auto_or_none(target: Any, runtime: str) -> str:
    try:
        return choose_backend("auto", target, runtime, {"partition"})
    except BadInput:
        return "none (no network faults)"


def as_endpoints(real: Endpoints | Mapping[str, Addr]) -> Endpoints:
    """Endpoints from Endpoints or a node -> MAIN address mapping."""
    if isinstance(real, Endpoints):
        return real
    return Endpoints.main_only(real)


@dataclass
class NetSetup:
    """The network layer of one run (what `chaos.run._setup_net` returns).

    peer(src, dst, port): what src dials to reach dst's named port (NodeConfig.peers /
    peer_ports); client(dst, port, placement): what a client reaches dst's port at (placement
    = the node a client is bound to, None = unplaced); faults: the NetFaults the nemesis
    uses, or None; evidence: what the nemesis hands its faults' links to; close(): undo
    everything (idempotent; proxies deleted, rules removed, embedded server stopped).
    """

    backend: str
    real: Endpoints
    faults: NetFaults | None = None
    #: the fault-effect evidence (chaos.net.evidence.Evidence) for the nemesis, or None
    evidence: Any = None
    _peer: Callable[[str, str, str], Addr] | None = None
    _client: Callable[[str, str, str | None], Addr] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def peer(self, src: str, dst: str, port: str = MAIN) -> Addr:
        if self._peer is None:
            return self.real.port(dst, port)
        return self._peer(src, dst, port)

    def client(self, dst: str, port: str = MAIN, placement: str | None = None) -> Addr:
        if self._client is None:
            return self.real.port(dst, port)
        return self._client(dst, port, placement)

    def peer_ports(self, src: str) -> dict[str, dict[str, Addr]]:
        """NodeConfig.peer_ports of node `src`: every other node's every named port."""
        return {dst: {p: self.peer(src, dst, p) for p in self.real.ports[dst]}
                for dst in self.real if dst != src}

    def client_endpoints(self, placement: str | None = None) -> Endpoints:
        """The Endpoints a client (bound to `placement`, or unplaced) is given."""
        ports = {n: {p: self.client(n, p, placement) for p in self.real.ports[n]}
                 for n in self.real}
        return Endpoints(ports, real={n: dict(v) for n, v in self.real.ports.items()})

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            closer()
