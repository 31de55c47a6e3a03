"""The proxy mesh: one Toxiproxy proxy per directed node->node link and per client->node link.

Node a reaches node b's MAIN port through proxy "a->b" (`peer_addr(a, b)`) and b's other named
ports through "a->b:<port>"; clients reach node b through "client->b" (`client_addr(b)`), and
a client placed with node x (Jepsen's client placement) through "client@x->b". Every network
fault is a few API calls, without root; a fault on a link acts on every port of the pair:

- partition(groups): two nodes may talk iff some group holds both; every other pair's proxies
  are disabled in both directions (mode "refuse": new connects are refused, live connections
  closed at once) or blackholed with `timeout 0` toxics (mode "drop": connects succeed but no
  byte flows, like dropped packets; healing closes those connections). Groups may overlap
  (bridge, majorities-ring). Unplaced client links are never cut; the links of a client
  placed with x are cut exactly like x's own links (it reaches what x reaches).
- cut(a, b), one way: bytes from a to b are dropped, bytes from b to a still flow. A TCP link
  is initiated by one side, so this takes two toxics: on proxy "a->b" (connections a opened to
  b) the `upstream` stream (a's requests) is blackholed, and on proxy "b->a" (connections b
  opened to a) the `downstream` stream (a's replies) is blackholed. Both connections stay
  open; a sees its requests unanswered, b sees its requests to a answered by silence.
- latency/bandwidth on chosen links: each direction of data on the link's proxy is delayed by
  `ms` (so a request/response round trip over a->b gains 2*ms).
- heal(): re-enables every mesh proxy and removes every toxic on it, read back from the
  server, so it also undoes faults left by a crashed nemesis.

Every fault method returns a JSON-able dict of what it did (for the history's nemesis ops);
`state()` says what is currently faulty; `verify()` probes that the links are as intended;
`traffic()` reads the embedded server's per-proxy counters (the fault-effect evidence).
"""
from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from chaos.errors import BadInput, SetupError
from chaos.faults.shapes import SHAPES, natural, partition_shape, together
from chaos.net.client import ProxyClient, ProxyError
from chaos.target import MAIN, Addr, Endpoints

__all__ = ["CLIENT", "SHAPES", "Mesh", "partition_shape", "placed_client"]

CLIENT = "client"
CUT = "chaos-cut"
_natural = natural


def placed_client(node: str) -> str:
    """The link source name of clients placed with `node` ("client@n1")."""
    return f"{CLIENT}@{node}"


class Mesh:
    """A proxy per directed link and named port between `nodes` (name -> real address(es)).

    `nodes` is an Endpoints (every named port is proxied) or node -> MAIN Addr. `placements`
    are the nodes clients may be placed with (client-placement "node"): each gets its own
    client links "client@x->b".
    """

    backend = "proxy"
    capabilities = frozenset({"partition", "one-way", "drop", "latency", "jitter", "bandwidth",
                              "reset", "client-placement", "evidence"})

    def __init__(self, client: ProxyClient, nodes: Endpoints | Mapping[str, Addr | None],
                 listen_host: str = "127.0.0.1", *, prefix: str = "",
                 advertise_host: str | None = None, probe_timeout: float = 1.0,
                 placements: Iterable[str] = ()) -> None:
        if len(nodes) < 1:
            raise BadInput("a mesh needs at least one node")
        if any(n == CLIENT or n.startswith(CLIENT + "@") for n in nodes):
            raise BadInput(f"{CLIENT!r} cannot be a node name (it names the client links)")
        ports = nodes.ports if isinstance(nodes, Endpoints) else {
            n: {MAIN: a} for n, a in nodes.items()}
        order = sorted(ports, key=natural)
        self.client = client
        self.ports: dict[str, dict[str, Any]] = {n: dict(ports[n]) for n in order}
        self.nodes = {n: self.ports[n].get(MAIN) for n in order}
        self.placements = [n for n in order if n in set(placements)]
        self.listen_host = listen_host
        self.advertise_host = advertise_host or listen_host
        self.prefix = prefix
        self.probe_timeout = probe_timeout
        self._ports: dict[tuple[str, str, str], int] = {}
        self._partition: list[list[str]] | None = None
        self._cut: set[tuple[str, str]] = set()  # links (pairs) partition() cut
        self._mode = "refuse"
        self._one_way: set[tuple[str, str]] = set()
        self._toxics: dict[tuple[str, str], set[str]] = {}  # link -> toxic names we added
        #: (link, toxic name) -> (type, stream, attributes) each proxy of the link must hold
        self._want: dict[tuple[tuple[str, str], str], tuple[str, str, dict[str, int]]] = {}

    # -- topology ---------------------------------------------------------------------------

    def name(self, src: str, dst: str, port: str = MAIN) -> str:
        """The proxy name of link src->dst's `port` ("n1->n2", "n1->n2:peer", "client->n3")."""
        tail = "" if port == MAIN else f":{port}"
        return f"{self.prefix}{src}->{dst}{tail}"

    def node_links(self) -> list[tuple[str, str]]:
        return [(a, b) for a in self.nodes for b in self.nodes if a != b]

    def client_sources(self) -> list[str]:
        """"client" (unplaced clients), then "client@x" for every placement."""
        return [CLIENT] + [placed_client(x) for x in self.placements]

    def links(self) -> list[tuple[str, str]]:
        """Every directed link: node->node, then client->node (unplaced, then placed)."""
        return self.node_links() + [(c, b) for c in self.client_sources() for b in self.nodes]

    def proxies_of(self, link: tuple[str, str]) -> list[str]:
        """The proxy names of a link: one per named port of its destination."""
        return [self.name(link[0], link[1], p) for p in self.ports[link[1]]]

    def setup(self) -> None:
        """Create every proxy in one /populate call (listen port 0: the server picks ports)."""
        keys = [(a, b, p) for a, b in self.links() for p in self.ports[b]]
        entries = [
            {"name": self.name(a, b, p), "listen": f"{self.listen_host}:0",
             "upstream": str(self.ports[b][p]), "enabled": True}
            for a, b, p in keys
        ]
        created = {p["name"]: p for p in self.client.populate(entries)}
        for key in keys:
            proxy = created.get(self.name(*key))
            if proxy is None:
                raise SetupError(f"proxy {self.name(*key)} was not created by /populate")
            self._ports[key] = int(proxy["listen"].rpartition(":")[2])

    def _addr(self, src: str, dst: str, port: str = MAIN) -> Addr:
        try:
            return Addr(self.advertise_host, self._ports[(src, dst, port)])
        except KeyError:
            if not self._ports:
                raise SetupError("mesh not set up: call setup() first") from None
            raise BadInput(f"no link {src}->{dst} port {port} in the mesh "
                           f"(nodes: {', '.join(self.nodes)})") from None

    def proxy_addr(self, src: str, dst: str, port: str = MAIN) -> Addr:
        """Where the proxy of src->dst's `port` listens (what verify probes)."""
        return self._addr(src, dst, port)

    def peer_addr(self, src: str, dst: str, port: str = MAIN) -> Addr:
        """Where node `src` must connect to reach node `dst`'s `port`."""
        if src == CLIENT or src.startswith(CLIENT + "@"):
            raise BadInput("use client_addr() for client links")
        return self._addr(src, dst, port)

    def client_addr(self, dst: str, port: str = MAIN, placement: str | None = None) -> Addr:
        """Where clients (placed with `placement`, or unplaced) connect to reach `dst`."""
        if placement is not None and placement not in self.placements:
            raise BadInput(f"no client placement {placement!r} in the mesh")
        return self._addr(CLIENT if placement is None else placed_client(placement), dst, port)

    def peers(self, src: str) -> dict[str, Addr]:
        """NodeConfig.peers for node `src`: every other node's MAIN port as src dials it."""
        return {dst: self.peer_addr(src, dst) for dst in self.nodes if dst != src}

    # -- validation helpers -----------------------------------------------------------------

    def _check_node(self, node: str) -> None:
        if node not in self.nodes:
            raise BadInput(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")

    def _check_links(self, links: Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
        if links is None:
            return self.node_links()
        out = []
        for link in links:
            if len(link) != 2:
                raise BadInput(f"a link is a (src, dst) pair, got {link!r}")
            src, dst = link
            if src not in self.client_sources():
                self._check_node(src)
            self._check_node(dst)
            if src == dst:
                raise BadInput(f"no link from {src} to itself")
            out.append((src, dst))
        return out

    # -- faults -----------------------------------------------------------------------------

    def shape(self, name: str, rng: random.Random, leader: str | None = None) -> list[list[str]]:
        """Groups for a named partition shape (see chaos.faults.shapes)."""
        if leader is not None:
            self._check_node(leader)
        return partition_shape(list(self.nodes), name, rng, leader)

    def partition(self, groups: list[list[str]], mode: str = "refuse") -> dict[str, Any]:
        """Cut every link whose ends share no group, both ways; replaces any partition.

        Placed clients' links follow their node: client@x->b is cut iff x->b is.
        """
        if mode not in ("refuse", "drop"):
            raise BadInput(f"unknown partition mode {mode!r} (refuse or drop)")
        covered: set[str] = set()
        for group in groups:
            for node in group:
                self._check_node(node)
            covered.update(group)
        missing = [n for n in self.nodes if n not in covered]
        if missing:
            raise BadInput(f"node(s) {', '.join(missing)} in no partition group")
        keep = together(groups)
        want = {(a, b) for a, b in self.node_links() if (a, b) not in keep}
        want |= {(placed_client(x), b) for x in self.placements for b in self.nodes
                 if x != b and (x, b) not in keep}
        if self._cut and mode != self._mode:
            self._restore(self._cut)
            self._cut = set()
        self._restore(self._cut - want)
        for link in sorted(want - self._cut):
            if mode == "refuse":
                for pname in self.proxies_of(link):
                    self.client.disable(pname)
            else:
                for stream in ("upstream", "downstream"):
                    self._add_toxic(link, f"chaos-partition-{stream}", "timeout", stream,
                                    {"timeout": 0})
        self._cut, self._mode = want, mode
        self._partition = [list(g) for g in groups]
        nodes_cut = sorted(link for link in want if link[0] in self.nodes)
        out: dict[str, Any] = {"partition": self._partition, "mode": mode,
                               "cut": [list(link) for link in nodes_cut]}
        if len(want) > len(nodes_cut):
            out["clients_cut"] = [list(l) for l in sorted(want) if l[0] not in self.nodes]
        return out

    def _restore(self, links: set[tuple[str, str]]) -> None:
        for link in sorted(links):
            if self._mode == "refuse":
                for pname in self.proxies_of(link):
                    self.client.enable(pname)
            else:
                for stream in ("upstream", "downstream"):
                    self._remove_toxic(link, f"chaos-partition-{stream}")

    def cut(self, src: str, dst: str) -> dict[str, Any]:
        """One-way cut: drop every byte src sends to dst (see the module docstring)."""
        self._check_node(src)
        self._check_node(dst)
        if src == dst:
            raise BadInput(f"no link from {src} to itself")
        self._add_toxic((src, dst), f"{CUT}-{src}-{dst}", "timeout", "upstream", {"timeout": 0})
        self._add_toxic((dst, src), f"{CUT}-{src}-{dst}", "timeout", "downstream", {"timeout": 0})
        self._one_way.add((src, dst))
        return {"cut": [src, dst], "one_way": True,
                "toxics": [[self.name(src, dst), "upstream"], [self.name(dst, src), "downstream"]]}

    def latency(self, links: list[tuple[str, str]] | None, ms: int,
                jitter_ms: int = 0) -> dict[str, Any]:
        """Delay each direction of data on `links` (None = all node links) by ms ± jitter_ms.

        Replaces earlier latency on those links; ms = jitter_ms = 0 removes it.
        """
        if not (0 <= ms <= 3_600_000 and 0 <= jitter_ms <= 3_600_000):
            raise BadInput(f"latency {ms} ms / jitter {jitter_ms} ms out of range [0, 3600000]")
        chosen = self._check_links(links)
        for link in chosen:
            for stream in ("upstream", "downstream"):
                name = f"chaos-latency-{stream}"
                if ms == 0 and jitter_ms == 0:
                    self._remove_toxic(link, name)
                else:
                    self._set_toxic(link, name, "latency", stream,
                                    {"latency": ms, "jitter": jitter_ms})
        return {"latency": ms, "jitter": jitter_ms, "links": [list(l) for l in chosen]}

    def bandwidth(self, links: list[tuple[str, str]] | None, rate_kb: int) -> dict[str, Any]:
        """Limit each direction of `links` to rate_kb KB/s (1 KB = 1000 B); 0 removes it."""
        if not 0 <= rate_kb <= 10_000_000:
            raise BadInput(f"bandwidth {rate_kb} KB/s out of range [0, 10000000]")
        chosen = self._check_links(links)
        for link in chosen:
            for stream in ("upstream", "downstream"):
                name = f"chaos-bandwidth-{stream}"
                if rate_kb == 0:
                    self._remove_toxic(link, name)
                else:
                    self._set_toxic(link, name, "bandwidth", stream, {"rate": rate_kb})
        return {"bandwidth": rate_kb, "links": [list(l) for l in chosen]}

    def reset(self, links: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        """Drop every live connection on `links` (None = all node links); they may reconnect.

        Bounces each proxy (disable + enable: the peers see their sockets closed). Links a
        refuse-mode partition holds cut stay cut.
        """
        chosen = self._check_links(links)
        bounced = []
        for link in chosen:
            if link in self._cut and self._mode == "refuse":
                continue
            for pname in self.proxies_of(link):
                self.client.disable(pname)
                self.client.enable(pname)
            bounced.append(list(link))
        return {"reset": bounced}

    def _mine(self) -> set[str]:
        return {self.name(a, b, p) for a, b in self.links() for p in self.ports[b]}

    def heal(self) -> dict[str, Any]:
        """Enable every mesh proxy and remove every toxic on it (read from the server)."""
        mine = self._mine()
        enabled, removed = [], []
        for pname, proxy in sorted(self.client.proxies().items()):
            if pname not in mine:
                continue
            if not proxy.get("enabled", True):
                self.client.enable(pname)
                enabled.append(pname)
            for toxic in proxy.get("toxics") or []:
                self.client.delete_toxic(pname, toxic["name"], missing_ok=True)
                removed.append([pname, toxic["name"]])
        self._partition, self._cut, self._one_way = None, set(), set()
        self._toxics.clear()
        self._want.clear()
        return {"heal": True, "enabled": enabled, "removed_toxics": removed}

    # -- toxic bookkeeping (a link's toxics go on every proxy of the link) -------------------

    def _add_toxic(self, link: tuple[str, str], name: str, type_: str, stream: str,
                   attributes: dict[str, int]) -> None:
        for pname in self.proxies_of(link):
            try:
                self.client.add_toxic(pname, type_, stream, name, 1.0, attributes)
            except ProxyError as exc:
                if exc.status != 409:
                    raise
                self.client.update_toxic(pname, name, attributes, 1.0)
        self._toxics.setdefault(link, set()).add(name)
        self._want[(link, name)] = (type_, stream, dict(attributes))

    def _set_toxic(self, link: tuple[str, str], name: str, type_: str, stream: str,
                   attributes: dict[str, int]) -> None:
        if name in self._toxics.get(link, ()):
            for pname in self.proxies_of(link):
                self.client.update_toxic(pname, name, attributes, 1.0)
            self._want[(link, name)] = (type_, stream, dict(attributes))
        else:
            self._add_toxic(link, name, type_, stream, attributes)

    def _remove_toxic(self, link: tuple[str, str], name: str) -> None:
        for pname in self.proxies_of(link):
            self.client.delete_toxic(pname, name, missing_ok=True)
        self._want.pop((link, name), None)
        names = self._toxics.get(link)
        if names is not None:
            names.discard(name)
            if not names:
                del self._toxics[link]

    # -- state, evidence and verification ---------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What this mesh has done and not undone (JSON-able); `faulty` False = all healed."""
        toxics = {self.name(*l): sorted(n) for l, n in sorted(self._toxics.items()) if n}
        return {
            "faulty": bool(self._cut or self._one_way or toxics),
            "partition": self._partition,
            "mode": self._mode,
            "cut_links": [list(l) for l in sorted(self._cut)],
            "one_way": [list(l) for l in sorted(self._one_way)],
            "toxics": toxics,
        }

    def traffic(self) -> dict[tuple[str, str], int] | None:
        """Per node link: the bytes its dialer sent since setup (all ports).

        Only the dialer's bytes count: `verify()`'s own probes connect and send nothing (and a
        server may greet even a probe), so connections and downstream bytes prove nothing.

        None when the server does not report traffic (a real Toxiproxy: `chaos_traffic` is
        our extension), so the evidence is "unmeasured", never "carried nothing".
        """
        server = self.client.proxies()
        out: dict[tuple[str, str], int] = {}
        for link in self.node_links():
            total = 0
            for pname in self.proxies_of(link):
                stats = (server.get(pname) or {}).get("chaos_traffic")
                if not isinstance(stats, dict):
                    return None
                total += int(stats.get("upstream_bytes", 0))
            out[link] = total
        return out

    def bypass(self) -> list[str]:
        """Connections around the mesh; the explicit mesh alone cannot see them (see
        chaos.net.evidence for the runtime-specific scans)."""
        return []

    def _probe(self, addr: Addr) -> str:
        """"open" if a TCP connect succeeds, else the reason ("refused", "timeout", ...)."""
        try:
            with socket.create_connection((addr.host, addr.port), timeout=self.probe_timeout):
                return "open"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))

    def verify(self) -> list[str]:
        """Probe every link's proxies and the server's view; [] when the mesh is as intended.

        refuse-mode cut links must refuse TCP connects and be disabled; every other link must
        accept connects and be enabled; links carrying a one-way cut or drop-mode partition
        must hold a `timeout 0` toxic on the intended stream (a generic probe cannot see
        dropped bytes without speaking the node's protocol), and every latency / bandwidth
        toxic we set must be on every proxy of its link with our attributes. Unplaced client
        links are not probed (never cut).
        """
        problems: list[str] = []
        try:
            server = self.client.proxies()
        except ProxyError as exc:
            return [f"proxy server unreachable: {exc}"]
        expect_toxics: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for a, b in self._one_way:
            expect_toxics.setdefault((a, b), set()).add((f"{CUT}-{a}-{b}", "upstream"))
            expect_toxics.setdefault((b, a), set()).add((f"{CUT}-{a}-{b}", "downstream"))
        if self._mode == "drop":
            for link in self._cut:
                for s in ("upstream", "downstream"):
                    expect_toxics.setdefault(link, set()).add((f"chaos-partition-{s}", s))
        links = [l for l in self.links() if l[0] != CLIENT]
        for link in links:
            for port in self.ports[link[1]]:
                pname = self.name(*link, port)
                proxy = server.get(pname)
                if proxy is None:
                    problems.append(f"{pname}: proxy missing on the server")
                    continue
                cut = link in self._cut and self._mode == "refuse"
                if proxy.get("enabled") == cut:
                    problems.append(f"{pname}: enabled={proxy.get('enabled')} but should be "
                                    f"{'cut' if cut else 'up'}")
                seen = {(t["name"], t["stream"].lower()) for t in proxy.get("toxics") or []
                        if t["type"] == "timeout" and t["attributes"].get("timeout") == 0
                        and t.get("toxicity", 1) == 1}
                for name, stream in sorted(expect_toxics.get(link, set()) - seen):
                    problems.append(f"{pname}: blackhole toxic {name} on {stream} is missing")
                problems += self._check_toxics(link, pname, proxy.get("toxics") or [])
                result = self._probe(self._addr(*link, port))
                if cut and result == "open":
                    problems.append(f"{pname}: cut, but a TCP connect went through")
                if not cut and result != "open":
                    problems.append(f"{pname}: should be up, but a TCP connect failed ({result})")
        return problems

    def _check_toxics(self, link: tuple[str, str], pname: str,
                      listed: list[dict[str, Any]]) -> list[str]:
        """Every toxic we put on `link` (latency, bandwidth, ...) is on `pname` as we set it."""
        have = {t["name"]: t for t in listed}
        problems = []
        for (want_link, name), (type_, stream, attrs) in sorted(self._want.items()):
            if want_link != link or type_ == "timeout":  # blackholes: checked above
                continue
            got = have.get(name)
            if got is None:
                problems.append(f"{pname}: toxic {name} ({type_}) is missing")
            elif (got.get("type") != type_ or str(got.get("stream", "")).lower() != stream
                  or any(got.get("attributes", {}).get(k) != v for k, v in attrs.items())
                  or got.get("toxicity", 1) != 1):
                problems.append(f"{pname}: toxic {name} is {got.get('type')} on "
                                f"{got.get('stream')} {got.get('attributes')}, not {type_} on "
                                f"{stream} {attrs}")
        return problems

    def teardown(self) -> None:
        """Delete every proxy of this mesh (ignores ones already gone)."""
        for pname in sorted(self._mine()):
            self.client.delete_proxy(pname, missing_ok=True)
        self._ports.clear()
        self._partition, self._cut, self._one_way = None, set(), set()
        self._toxics.clear()
        self._want.clear()
