"""The target contract: what a replicated system under test implements (DESIGN §7a).

A target (Jepsen's `db` + `client` factory) says how to run one node as one or more named
services, how to ask a node for its status, and how to make a client for the workload ops.
It knows nothing about where nodes run: the runtime (chaos.runtime) starts the services
locally, in containers or over SSH, and the net layer (chaos.net) decides which address each
node dials to reach each peer (a proxy per directed link on the explicit mesh; the peer's real
address on the transparent mesh, where nat rules steer the traffic through the proxies).

The tutorial for third parties is docs/targets.md. Built-in and third-party targets register
in the entry-point group `chaos.targets`; a path (`--target ./my_target.py`) works too
(chaos.plugins loads both and runs `validate()` on what it loaded).

Everything a caller of a target uses is in `Target` below, typed and documented. `BaseTarget`
gives every optional member its documented default, so a target may subclass it and write
only what it needs; a target that does not subclass it is filled in by the same defaults
(`with_defaults`), never duck-typed around.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# the status contract (what `Target.status` answers, how terms order) lives in chaos.status;
# named here too, as part of the contract a target implements
from chaos.status import ROLES as ROLES
from chaos.status import StatusError as StatusError
from chaos.status import check_status as check_status
from chaos.status import term_key as term_key

#: the name of every node's main port: the one clients and the monitor talk to
MAIN = "main"

@dataclass(frozen=True)
class Addr:
    """A TCP address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Endpoints(Mapping[str, Addr]):
    """How one party (a node, the clients, the monitor) reaches every node's named ports.

    As a Mapping it is node -> the node's MAIN address, so `endpoints["n2"]` and
    `dict(endpoints)` give main addresses; `port(node, name)` reaches any other named port
    ("sentinel", "peer", "api", ...). Pickles (clients are built in worker processes).
    """

    ports: Mapping[str, Mapping[str, Addr]]
    #: node -> port name -> the node's REAL address for that port (what it advertises); lets
    #: a client map an address a node announced (a Sentinel's master, a member list) to the
    #: node's name and then reach it through `ports` (the client->node links). Empty when
    #: the real addresses are the ones in `ports`.
    real: Mapping[str, Mapping[str, Addr]] = field(default_factory=dict)

    def __getitem__(self, node: str) -> Addr:
        return self.ports[node][MAIN]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ports)

    def __len__(self) -> int:
        return len(self.ports)

    def port(self, node: str, name: str = MAIN) -> Addr:
        """The address of `node`'s port called `name`; KeyError names what is missing."""
        try:
            return self.ports[node][name]
        except KeyError:
            raise KeyError(f"no port {name!r} on node {node!r}") from None

    def node_of(self, host: str, port: int) -> tuple[str, str] | None:
        """(node, port name) whose real address is host:port, or None when no node has it."""
        for table in (self.real, self.ports):
            for node, named in table.items():
                for name, addr in named.items():
                    if addr.host == host and addr.port == port:
                        return node, name
        return None

    def route(self, host: str, port: int) -> Addr:
        """How this party reaches an address a node announced: through its link when host:port
        is a node's real address, else host:port itself (not a node: reached directly)."""
        hit = self.node_of(host, port)
        return self.port(*hit) if hit else Addr(host, port)

    @classmethod
    def main_only(cls, addrs: Mapping[str, Addr]) -> Endpoints:
        """Endpoints from node -> main address (targets with a single port)."""
        return cls({n: {MAIN: a} for n, a in addrs.items()})


@dataclass
class NodeConfig:
    """Everything a node is told before it starts (one per start, restarts included).

    name:       "n1".."nN" (stable; used in histories)
    listen:     the address the node's MAIN service binds (127.0.0.1:<port> on the local
                runtime, 0.0.0.0:<port> in containers and on SSH hosts)
    advertise:  the node's real address for its MAIN port: what it announces to peers and
                clients (Sentinel announce-ip, etcd advertise URLs, Patroni connect_address)
    peers:      node -> the peer's MAIN port as THIS node must dial it (a proxy address on the
                explicit mesh; the real address on the transparent mesh and without a mesh)
    data_dir:   absolute directory on the node's host, owned by this node; files, logs, data
    options:    the target options (-O key=value), already validated
    ports:      this node's named ports (MAIN included) -> the port number it binds
    peer_ports: node -> port name -> that peer port as THIS node must dial it
    advertise_ports: port name -> this node's real address for that port
    restart:    False on the first start, True when started again after a kill
    rejoin:     True when started again after its data was wiped (the `member` fault): the
                node must come back as a NEW member, catching up from the others (a
                snapshot plus the log after it) and, in a consensus system, not vote or count
                toward a quorum before it has caught up
    nodes:      every node name of the cluster, in order (this one included)
    code_root:  the directory on the node's host holding the `chaos` and `targets` packages
    python:     an interpreter on the node's host (the controller's own one locally)
    """

    name: str
    listen: Addr
    peers: dict[str, Addr]
    data_dir: str
    options: dict[str, Any] = field(default_factory=dict)
    advertise: Addr | None = None
    ports: dict[str, int] = field(default_factory=dict)
    peer_ports: dict[str, dict[str, Addr]] = field(default_factory=dict)
    advertise_ports: dict[str, Addr] = field(default_factory=dict)
    restart: bool = False
    rejoin: bool = False
    nodes: tuple[str, ...] = ()
    code_root: str = ""
    python: str = "python3"

    def port(self, name: str = MAIN) -> int:
        """This node's own port called `name`."""
        try:
            return self.ports[name] if self.ports else self.listen.port
        except KeyError:
            raise KeyError(f"node {self.name} has no port {name!r} (declared: "
                           f"{', '.join(self.ports)})") from None

    def peer(self, node: str, name: str = MAIN) -> Addr:
        """How this node dials `node`'s port `name`."""
        if name == MAIN and not self.peer_ports:
            return self.peers[node]
        return self.peer_ports[node][name]


@dataclass(frozen=True)
class Service:
    """One process of a node, started in order with the others of the same node.

    name:         unique within the node ("redis", "sentinel", "etcd", "patroni", "main")
    argv:         the command, run in the foreground in the node's data dir (the runtime
                  daemonises it, in its own process group, output to <data_dir>/<name>.out)
    env:          extra environment variables
    files:        path -> content, written before the service starts; a relative path is
                  relative to the node's data dir (templates are rendered by the target)
    ready_port:   a named port that accepts TCP connections once the service is ready; the
                  runtime waits for it (from the controller, at the real address) before
                  starting the next service. None: no wait.
    ready_timeout: seconds to wait for `ready_port`; past it the start is a SetupError naming
                  the node, the service and the tail of its output
    user:         run the service as this system user (it must exist on the node's host, e.g.
                  "postgres" from Debian's postgresql package; PostgreSQL refuses to run as
                  root); the runtime makes the data dir writable for it. None: the runtime's user
    """

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    ready_port: str | None = MAIN
    ready_timeout: float = 30.0
    user: str | None = None


@dataclass(frozen=True)
class OptionSpec:
    """A target option, for validation and `chaos targets`.

    `check`, when given, returns an error message for a bad (already typed) value or None;
    `min`/`max` bound numbers (inclusive). The default validator (`validate_options_default`)
    applies all of them and names the option in every error.
    """

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    type: type = str
    min: float | None = None
    max: float | None = None
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class CommandResult:
    """What a command run on a node's host gave back."""

    ok: bool
    out: str = ""
    err: str = ""
    code: int = 0


@dataclass
class Cluster:
    """What the cluster-level hooks see: the running cluster, from the controller.

    nodes:     node names in order
    endpoints: the nodes' REAL addresses (out of band, not through any proxy)
    options:   the validated target options
    run:       run(node, shell_command, timeout) -> CommandResult on the node's host
    data_dir:  data_dir(node) -> the node's data directory on its host
    """

    nodes: list[str]
    endpoints: Endpoints
    options: dict[str, Any]
    run: Callable[[str, str, float], CommandResult]
    data_dir: Callable[[str], str]


@runtime_checkable
class Membership(Protocol):
    """Optional capability: membership changes at run time (`--nemesis membership`).

    A target that can remove a node from its configuration and add it back sets
    `Target.membership` to an object with these methods; targets without it are not offered
    the fault (asking for it is bad input, exit 4). Each method is called from the
    controller with the running cluster (`Cluster`: real addresses, commands on the nodes'
    hosts) and returns once the change is COMMITTED by the cluster (not merely requested),
    raising (any exception, the message recorded) when it could not be made. Why committed:
    chaos verifies the change through `members` next, and a change the leader only proposed
    can be lost in a failover. chaos itself stops a removed node (SIGKILL), empties its data
    dir, and after `add_member` starts it with `NodeConfig.rejoin` True: it must bootstrap
    as a NEW member (snapshot plus log) and not count toward a quorum before it caught up.
    docs/targets.md §5b is the tutorial.
    """

    def members(self, cluster: Cluster, timeout: float) -> list[str]:
        """The node names in the cluster's current configuration, as its leader knows it."""
        ...

    def remove_member(self, cluster: Cluster, node: str, timeout: float) -> None:
        """Remove `node` (a follower) from the configuration, through the leader."""
        ...

    def add_member(self, cluster: Cluster, node: str, timeout: float) -> None:
        """Add `node` back as a new member; chaos starts it (rejoin) right after. A node
        that is a member already (a removal that raised may not have happened): no-op."""
        ...


def optional_faults(target: Any) -> frozenset[str]:
    """The optional fault kinds `target` takes: its `faults`, plus "membership" when it has
    a `membership` capability (the one rule; the run, `--nemesis all` and docs use it)."""
    kinds = frozenset(getattr(target, "faults", frozenset()))
    return kinds | {"membership"} if getattr(target, "membership", None) is not None else kinds


class Client(Protocol):
    """A connection used by ONE logical client process, issuing one op at a time.

    `invoke(op)` takes an invoke dict (f, key, value, and "node" for an op routed to one
    node, as the final reads are) and returns the completion fields:
    {"type": "ok"|"fail"|"info", "value": ..., "node": "n2", "meta": {...}, "error": "..."}.
    Ops and value shapes per workload are in docs/targets.md. Return "fail" only when the op
    surely did not happen; when unsure, "info" (or raise: the runner records an exception
    as info with error "indeterminate: ...").
    """

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class Target(Protocol):
    """One replicated system. Every method is called from the controller, never on a node.

    Members (BaseTarget documents each default):
      name, options, workloads, ports, packages, binaries, controller_modules,
      supports_mesh, default_runtime, startup_timeout, setup_before_leader, faults,
      validate_options, services, client, status, setup_cluster, teardown_cluster,
      before_final_reads, check_cluster.

    The order of a run (chaos.phases; docs/targets.md "The order of a run"): options
    (validate_options, check_cluster) before anything starts; every node's services in
    order, each ready; then chaos polls `status` until one node says "leader" (at most
    `startup_timeout` s, else a setup error) and calls setup_cluster; with
    `setup_before_leader` True, setup_cluster runs first (right after the nodes are ready:
    a system that has no leader until a hook initiates or elects one) and the leader wait
    follows it. teardown_cluster runs whenever setup_cluster was called (also when it
    raised). A target method raising something other than chaos.errors.BadInput or
    SetupError is reported as the target's bug naming the method (exit 4 for the option
    checks, 3 from start-up on); before_final_reads or teardown_cluster raising after the
    workload ran does not lose the run: it is checked, and the verdict is unknown naming
    the hook.
    """

    name: str
    #: option name -> spec; `chaos targets` lists them, -O key=value sets them
    options: Mapping[str, OptionSpec]
    #: workloads this target's client supports, e.g. {"register", "set"}
    workloads: frozenset[str]
    #: named ports of every node (MAIN required) -> the port number used on remote runtimes
    #: (containers and SSH hosts have an address each); the local runtime picks free ones
    ports: Mapping[str, int]
    #: Debian packages a node needs, built into the node image by `chaos image build`
    packages: tuple[str, ...]
    #: executable -> the Debian package providing it; on the local and SSH runtimes a
    #: missing one is one error naming the package to install
    binaries: Mapping[str, str]
    #: Python modules the controller-side client imports -> the pip requirement providing
    #: each (checked when the target is loaded)
    controller_modules: Mapping[str, str]
    #: True when every peer address can be pointed at a proxy (the explicit mesh works);
    #: False when nodes discover peers by their real addresses (transparent mesh only)
    supports_mesh: bool
    #: the runtime `chaos run --target NAME` uses when --runtime is not given
    default_runtime: str
    #: seconds chaos waits, once every node is ready, for a status saying "leader" before
    #: the run is a setup error (a system whose first election is slow needs more)
    startup_timeout: float
    #: True: setup_cluster runs before the leader wait (a system with no leader until a
    #: hook initiates one, e.g. a replica set); False: after the first leader appeared
    setup_before_leader: bool
    #: the optional fault kinds this target takes (docs/targets.md "Optional faults"):
    #: "clock" when every process of a node reads time through libc (libfaketime can skew
    #: it; a static Go binary cannot be skewed), "member" when a node whose data dir was
    #: emptied rejoins as a new member (NodeConfig.rejoin) and status reports
    #: `log_position`. Others are refused before anything starts (exit 4).
    faults: frozenset[str]
    #: membership changes (`Membership`), or None: the target cannot change membership
    membership: Membership | None

    def validate_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """`-O key=value` strings -> typed options with defaults; BadInput names the option."""
        ...

    def services(self, node: NodeConfig) -> list[Service]:
        """The node's services in start order (one for a single-process system)."""
        ...

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> Client:
        """A client reaching each node's ports through `nodes` (the client->node links)."""
        ...

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        """The node's own view, out of band: {"role", "term", "leader", ...}.

        role: one of ROLES; term: any orderable value (int, str, list of ints), or None when
        the system has no terms; leader: the node name it follows/is, or None. Extra keys are
        recorded as they are; `log_position` (an orderable value: how far the node's copy of
        the replicated log/state reaches, e.g. its last log index) is required by the
        member fault. Raise (any exception) when the node does not answer.
        """
        ...

    def setup_cluster(self, cluster: Cluster) -> None:
        """After every node is up and before the workload: e.g. create a database."""
        ...

    def teardown_cluster(self, cluster: Cluster) -> None:
        """Before the nodes stop (best effort; errors are logged, never hide a verdict)."""
        ...

    def before_final_reads(self, cluster: Cluster, timeout: float) -> None:
        """After the last heal and quiescence, before the final reads: e.g. wait until
        replicas caught up. Default: nothing."""
        ...

    def check_cluster(self, options: Mapping[str, Any], nodes: tuple[str, ...]) -> None:
        """Options checked against the cluster size, once the node names are known and
        before anything starts; raise chaos.errors.BadInput naming the option. Why: some
        options only make sense for some sizes (a Sentinel quorum above the node count
        never fails over, WAIT for more replicas than exist always times out), and
        `validate_options` does not know the size. Default: nothing."""
        ...


class BaseTarget:
    """Defaults for every optional member of `Target`; subclass it and override what differs.

    A subclass must set `name` and define `client` and `status`, and either `services` or the
    single-process shortcut `start_command(node) -> argv` (one service called MAIN, ready when
    its MAIN port accepts connections).
    """

    name: str = ""
    options: Mapping[str, OptionSpec] = {}
    workloads: frozenset[str] = frozenset({"register", "set"})
    ports: Mapping[str, int] = {MAIN: 7000}
    packages: tuple[str, ...] = ()
    binaries: Mapping[str, str] = {}
    controller_modules: Mapping[str, str] = {}
    supports_mesh: bool = True
    default_runtime: str = "local"
    startup_timeout: float = 30.0
    setup_before_leader: bool = False
    faults: frozenset[str] = frozenset()
    membership: Membership | None = None

    def validate_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        from chaos.plugins import validate_options_default

        return validate_options_default(self, raw)

    def start_command(self, node: NodeConfig) -> list[str]:
        raise NotImplementedError(f"target {self.name}: define services() or start_command()")

    def services(self, node: NodeConfig) -> list[Service]:
        return [Service(MAIN, self.start_command(node))]

    def setup_cluster(self, cluster: Cluster) -> None:
        return None

    def teardown_cluster(self, cluster: Cluster) -> None:
        return None

    def before_final_reads(self, cluster: Cluster, timeout: float) -> None:
        return None

    def check_cluster(self, options: Mapping[str, Any], nodes: tuple[str, ...]) -> None:
        return None


class NoopClient:
    """Answers every op ok at once: reads None (read-set: []), other ops echo their value
    (tests, benchmarks)."""

    def invoke(self, op: Mapping[str, Any]) -> dict[str, Any]:
        value: Any = {"read": None, "read-set": []}.get(op["f"], op.get("value"))
        return {"type": "ok", "value": value}

    def close(self) -> None:
        return None


class NoopTarget(BaseTarget):
    """A target whose node is `sleep` and whose client does nothing (tests of the harness).

    Its status names the first node (sorted) the leader, the others followers, term None;
    it needs nothing installed but coreutils.
    """

    name = "noop"

    def start_command(self, node: NodeConfig) -> list[str]:
        return ["sleep", "86400"]

    def services(self, node: NodeConfig) -> list[Service]:
        return [Service(MAIN, self.start_command(node), ready_port=None)]

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> NoopClient:
        return NoopClient()

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        leader = min(endpoints) if len(endpoints) else node
        return {"role": "leader" if node == leader else "follower", "term": None,
                "leader": leader}
