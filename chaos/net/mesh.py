"""The proxy mesh: one Toxiproxy proxy per directed node->node link and per client->node link.

Node a reaches node b through proxy "a->b" (`peer_addr(a, b)`), clients reach node b through
"client->b" (`client_addr(b)`), so every network fault is a few API calls, without root:

- partition(groups): two nodes may talk iff some group holds both; every other pair's proxies
  are disabled in both directions (mode "refuse": new connects are refused, live connections
  closed at once) or blackholed with `timeout 0` toxics (mode "drop": connects succeed but no
  byte flows, like dropped packets; healing closes those connections). Groups may overlap
  (bridge, majorities-ring). Client links are never cut.
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
`state()` says what is currently faulty; `verify()` probes that the links are as intended.
"""
from __future__ import annotations

import errno
import random
import re
import socket
from typing import Any, Iterable

from chaos.errors import BadInput, SetupError
from chaos.net.client import ProxyClient, ProxyError
from chaos.target import Addr

CLIENT = "client"
SHAPES = ("halves", "random-halves", "isolate-one", "isolate-leader", "majorities-ring", "bridge")
CUT = "chaos-cut"


def _natural(name: str) -> list[Any]:
    """Sort key putting n2 before n10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _bisect(nodes: list[str]) -> list[list[str]]:
    half = len(nodes) // 2
    return [nodes[:half], nodes[half:]]


def partition_shape(nodes: list[str], name: str, rng: random.Random,
                    leader: str | None = None) -> list[list[str]]:
    """Groups for a named partition shape (pass them to a backend's `partition`).

    halves: [first n//2, rest] in name order; random-halves: the same after a shuffle;
    isolate-one: a random node alone; isolate-leader: `leader` alone; bridge: two halves
    sharing one node; majorities-ring: nodes on a shuffled ring, each linked to its
    neighbours within distance k = ceil((n//2)/2), returned as 2-node groups (edges): each
    node sees a majority (exactly one for n = 4, 5), and no two see the same one.
    """
    nodes = sorted(nodes, key=_natural)
    if name == "halves":
        return _bisect(nodes)
    if name == "random-halves":
        rng.shuffle(nodes)
        return _bisect(nodes)
    if name == "isolate-one":
        lone = rng.choice(nodes)
        return [[lone], [n for n in nodes if n != lone]]
    if name == "isolate-leader":
        if leader is None:
            raise BadInput("shape isolate-leader needs the current leader")
        return [[leader], [n for n in nodes if n != leader]]
    if name == "bridge":
        rng.shuffle(nodes)
        half = len(nodes) // 2
        return [nodes[: half + 1], nodes[half:]]
    if name == "majorities-ring":
        rng.shuffle(nodes)
        n = len(nodes)
        k = -(-(n // 2) // 2)
        edges = {tuple(sorted((nodes[i], nodes[(i + d) % n]), key=_natural))
                 for i in range(n) for d in range(1, k + 1) if nodes[i] != nodes[(i + d) % n]}
        return [list(e) for e in sorted(edges, key=lambda e: (_natural(e[0]), _natural(e[1])))]
    raise BadInput(f"unknown partition shape {name!r} (one of: {', '.join(SHAPES)})")


class Mesh:
    """A proxy per directed link between `nodes` (name -> the node's real address)."""

    def __init__(self, client: ProxyClient, nodes: dict[str, Addr], listen_host: str = "127.0.0.1",
                 *, prefix: str = "", advertise_host: str | None = None,
                 probe_timeout: float = 1.0) -> None:
        if len(nodes) < 1:
            raise BadInput("a mesh needs at least one node")
        if CLIENT in nodes:
            raise BadInput(f"{CLIENT!r} cannot be a node name (it names the client links)")
        self.client = client
        self.nodes = {n: nodes[n] for n in sorted(nodes, key=_natural)}
        self.listen_host = listen_host
        self.advertise_host = advertise_host or listen_host
        self.prefix = prefix
        self.probe_timeout = probe_timeout
        self._ports: dict[tuple[str, str], int] = {}
        self._partition: list[list[str]] | None = None
        self._cut: set[tuple[str, str]] = set()  # node pairs whose proxies partition() cut
        self._mode = "refuse"
        self._one_way: set[tuple[str, str]] = set()
        self._toxics: dict[tuple[str, str], set[str]] = {}  # link -> toxic names we added

    # -- topology ---------------------------------------------------------------------------

    def name(self, src: str, dst: str) -> str:
        """The proxy name of link src->dst ("n1->n2", "client->n3")."""
        return f"{self.prefix}{src}->{dst}"

    def node_links(self) -> list[tuple[str, str]]:
        return [(a, b) for a in self.nodes for b in self.nodes if a != b]

    def links(self) -> list[tuple[str, str]]:
        """Every directed link: node->node, then client->node."""
        return self.node_links() + [(CLIENT, b) for b in self.nodes]

    def setup(self) -> None:
        """Create every proxy in one /populate call (listen port 0: the server picks ports)."""
        entries = [
            {"name": self.name(a, b), "listen": f"{self.listen_host}:0",
             "upstream": str(self.nodes[b]), "enabled": True}
            for a, b in self.links()
        ]
        created = {p["name"]: p for p in self.client.populate(entries)}
        for a, b in self.links():
            proxy = created.get(self.name(a, b))
            if proxy is None:
                raise SetupError(f"proxy {self.name(a, b)} was not created by /populate")
            self._ports[(a, b)] = int(proxy["listen"].rpartition(":")[2])

    def _addr(self, src: str, dst: str) -> Addr:
        try:
            return Addr(self.advertise_host, self._ports[(src, dst)])
        except KeyError:
            if not self._ports:
                raise SetupError("mesh not set up: call setup() first") from None
            raise BadInput(f"no link {src}->{dst} in the mesh (nodes: {', '.join(self.nodes)})") from None

    def peer_addr(self, src: str, dst: str) -> Addr:
        """Where node `src` must connect to reach node `dst`."""
        if src == CLIENT:
            raise BadInput("use client_addr() for client links")
        return self._addr(src, dst)

    def client_addr(self, dst: str) -> Addr:
        """Where clients connect to reach node `dst`."""
        return self._addr(CLIENT, dst)

    def peers(self, src: str) -> dict[str, Addr]:
        """NodeConfig.peers for node `src`: every other node through its proxy."""
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
            if src != CLIENT:
                self._check_node(src)
            self._check_node(dst)
            if src == dst:
                raise BadInput(f"no link from {src} to itself")
            out.append((src, dst))
        return out

    # -- faults -----------------------------------------------------------------------------

    def shape(self, name: str, rng: random.Random, leader: str | None = None) -> list[list[str]]:
        """Groups for a named partition shape (see `partition_shape`)."""
        if leader is not None:
            self._check_node(leader)
        return partition_shape(list(self.nodes), name, rng, leader)

    def partition(self, groups: list[list[str]], mode: str = "refuse") -> dict[str, Any]:
        """Cut every node link whose ends share no group, both ways; replaces any partition."""
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
        together = {(a, b) for g in groups for a in g for b in g if a != b}
        want = {(a, b) for a, b in self.node_links() if (a, b) not in together}
        if self._cut and mode != self._mode:
            self._restore(self._cut)
            self._cut = set()
        self._restore(self._cut - want)
        for a, b in sorted(want - self._cut):
            if mode == "refuse":
                self.client.disable(self.name(a, b))
            else:
                for stream in ("upstream", "downstream"):
                    self._add_toxic((a, b), f"chaos-partition-{stream}", "timeout", stream,
                                    {"timeout": 0})
        self._cut, self._mode = want, mode
        self._partition = [list(g) for g in groups]
        return {"partition": self._partition, "mode": mode,
                "cut": [list(link) for link in sorted(want)]}

    def _restore(self, links: set[tuple[str, str]]) -> None:
        for link in sorted(links):
            if self._mode == "refuse":
                self.client.enable(self.name(*link))
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
            self.client.disable(self.name(*link))
            self.client.enable(self.name(*link))
            bounced.append(list(link))
        return {"reset": bounced}

    def heal(self) -> dict[str, Any]:
        """Enable every mesh proxy and remove every toxic on it (read from the server)."""
        mine = {self.name(a, b): (a, b) for a, b in self.links()}
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
        return {"heal": True, "enabled": enabled, "removed_toxics": removed}

    # -- toxic bookkeeping ------------------------------------------------------------------

    def _add_toxic(self, link: tuple[str, str], name: str, type_: str, stream: str,
                   attributes: dict[str, int]) -> None:
        try:
            self.client.add_toxic(self.name(*link), type_, stream, name, 1.0, attributes)
        except ProxyError as exc:
            if exc.status != 409:
                raise
            self.client.update_toxic(self.name(*link), name, attributes, 1.0)
        self._toxics.setdefault(link, set()).add(name)

    def _set_toxic(self, link: tuple[str, str], name: str, type_: str, stream: str,
                   attributes: dict[str, int]) -> None:
        if name in self._toxics.get(link, ()):
            self.client.update_toxic(self.name(*link), name, attributes, 1.0)
        else:
            self._add_toxic(link, name, type_, stream, attributes)

    def _remove_toxic(self, link: tuple[str, str], name: str) -> None:
        self.client.delete_toxic(self.name(*link), name, missing_ok=True)
        names = self._toxics.get(link)
        if names is not None:
            names.discard(name)
            if not names:
                del self._toxics[link]

    # -- state and verification -------------------------------------------------------------

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

    def _probe(self, addr: Addr) -> str:
        """"open" if a TCP connect succeeds, else the reason ("refused", "timeout", ...)."""
        try:
            with socket.create_connection((addr.host, addr.port), timeout=self.probe_timeout):
                return "open"
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "timeout"
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))

    def verify(self) -> list[str]:
        """Probe every node link and the server's view; [] when the mesh is as intended.

        refuse-mode cut links must refuse TCP connects and be disabled; every other link must
        accept connects and be enabled; links carrying a one-way cut or drop-mode partition
        must hold a `timeout 0` toxic on the intended stream (a generic probe cannot see
        dropped bytes without speaking the node's protocol).
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
        for link in self.node_links():
            pname = self.name(*link)
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
            result = self._probe(self.peer_addr(*link))
            if cut and result == "open":
                problems.append(f"{pname}: cut, but a TCP connect went through")
            if not cut and result != "open":
                problems.append(f"{pname}: should be up, but a TCP connect failed ({result})")
        return problems

    def teardown(self) -> None:
        """Delete every proxy of this mesh (ignores ones already gone)."""
        for a, b in self.links():
            self.client.delete_proxy(self.name(a, b), missing_ok=True)
        self._ports.clear()
        self._partition, self._cut, self._one_way = None, set(), set()
        self._toxics.clear()
