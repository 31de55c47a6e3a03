"""The transparent fault mesh: every link through its own proxy, without the target knowing.

Nodes are given their peers' REAL addresses. In each node a's network namespace one iptables
nat rule per link and port steers a's connections to b's real ip:port into the proxy for
a->b:port (DNAT in the OUTPUT chain, where locally generated connections are translated):

    iptables -t nat -A OUTPUT -d <b ip>/32 -p tcp --dport <b port>
             -m comment --comment chaos-mesh:<tag> -j DNAT --to-destination <proxy ip>:<port>

The proxies run in their own container (runtime.proxy_server()), so their own connections to
b leave from another network namespace and are never redirected: no exemption rule is needed.
Every Toxiproxy fault of chaos.net.mesh (partitions of any shape, one-way cuts, latency,
jitter, bandwidth, reset, client placement) then works for any TCP target.

What b sees: a connection a opened to b arrives at b from the PROXY's address (the proxy
container's IP, an ephemeral port), not from a's. A target that identifies its peers by the
source address of their connections (Redis records a replica's address that way unless
`replica-announce-ip` is set; PostgreSQL's pg_hba matches it) must announce its address
explicitly or allow the proxy's address. tests/test_transparent_docker.py checks this.

The rules are installed before any node starts (conntrack translates only connections opened
after a rule exists) and stay for the whole run: faults are toxics and disabled proxies, so a
heal leaves the plumbing in place; `teardown()` removes exactly the rules carrying our tag
(containers that are removed take their rules with them anyway).
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any

from chaos.control.remote import parallel
from chaos.errors import SetupError
from chaos.net.client import ProxyClient
from chaos.net.evidence import scan_ss
from chaos.net.iptables import heal_result, heal_script
from chaos.net.mesh import Mesh
from chaos.target import MAIN, Addr, Endpoints

#: the comment prefix of every transparent-mesh nat rule (`chaos down` looks for "chaos")
TAG_PREFIX = "chaos-mesh"


class TransparentMesh(Mesh):
    """The mesh of chaos.net.mesh behind nat rules in every node; peers get real addresses.

    run(node, shell_command, timeout=...) -> result with ok/out/err runs on the node's host
    (in its network namespace); `real` are the nodes' real addresses; the proxies listen on
    `listen_host` of the proxy container and are reached at `advertise_host`.
    """

    backend = "transparent"

    def __init__(self, client: ProxyClient, real: Endpoints, run: Callable[..., Any], *,
                 listen_host: str, advertise_host: str, tag: str,
                 placements: Iterable[str] = (), probe_timeout: float = 1.0) -> None:
        super().__init__(client, real, listen_host, advertise_host=advertise_host,
                         probe_timeout=probe_timeout, placements=placements)
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", tag):
            raise SetupError(f"mesh tag {tag!r}: use letters, digits and _.:- only")
        self.run = run
        self.real = real
        self.comment = f"{TAG_PREFIX}:{tag}"
        self.ips = {n: real[n].host for n in self.nodes}
        self._rules: dict[str, list[str]] = {}

    # -- addresses: nodes dial their peers' real addresses ---------------------------------

    def peer_addr(self, src: str, dst: str, port: str = MAIN) -> Addr:
        self._check_node(src)
        self._check_node(dst)
        return self.real.port(dst, port)

    def redirected(self) -> set[tuple[str, int]]:
        """Every real (ip, port) some node's nat rule steers into the mesh."""
        return {(a.host, a.port) for n in self.nodes for a in self.real.ports[n].values()}

    # -- the nat plumbing ------------------------------------------------------------------

    def rule(self, src: str, dst: str, port: str) -> str:
        """The rule spec (after `-A OUTPUT`) steering src's connections to dst:port."""
        real = self.real.port(dst, port)
        proxy = self.proxy_addr(src, dst, port)
        return (f"-d {real.host}/32 -p tcp -m tcp --dport {real.port} -m comment --comment "
                f"{shlex.quote(self.comment)} -j DNAT --to-destination {proxy.host}:{proxy.port}")

    def setup(self) -> None:
        """Create the proxies, then install every node's nat rules (before nodes start)."""
        super().setup()
        self._rules = {a: [self.rule(a, b, p) for b in self.nodes if b != a
                           for p in self.ports[b]] for a in self.nodes}

        def install(node: str) -> None:
            rules = self._rules[node]
            if not rules:
                return
            script = " && ".join(f"iptables -w -t nat -A OUTPUT {r}" for r in rules)
            res = self.run(node, script, timeout=60)
            if not res.ok:
                raise SetupError(
                    f"nat rules on {node} failed: {(res.err or res.out).strip()[:200]} (the "
                    "transparent mesh needs NET_ADMIN in the containers / root on SSH hosts)")
        try:
            parallel(install, list(self.nodes))
        except BaseException:
            self.remove_rules()
            raise

    def _pattern(self) -> str:
        escaped = re.escape(self.comment)
        return f'--comment "?{escaped}"?( |$)'

    def our_rules(self, node: str) -> list[str]:
        """Our nat OUTPUT rules on `node`, as `iptables -S` prints them."""
        res = self.run(node, "iptables -w -t nat -S OUTPUT", timeout=30)
        if not res.ok:
            raise SetupError(f"iptables -t nat -S on {node} failed: "
                             f"{(res.err or res.out).strip()[:200]}")
        return [line for line in res.out.splitlines() if re.search(self._pattern(), line)]

    def remove_rules(self) -> int:
        """Delete every nat rule with our tag on every node (ours only; idempotent)."""
        script = heal_script(self._pattern(), table="nat", chain="OUTPUT")

        def one(node: str) -> int:
            return heal_result(node, self.run(node, script, timeout=60))
        removed = parallel(one, list(self.nodes))
        return sum(removed.values())

    def verify(self) -> list[str]:
        """The proxies as Mesh.verify checks them, plus every node's nat rules in place."""
        problems = super().verify()
        try:
            found = parallel(self.our_rules, list(self.nodes))
        except SetupError as exc:
            return problems + [str(exc)]
        for node, lines in found.items():
            want = len(self._rules.get(node, []))
            if len(lines) != want:
                problems.append(f"{node}: {len(lines)} chaos nat rules, expected {want} "
                                "(traffic may bypass the mesh)")
        return problems

    def bypass(self) -> list[str]:
        """Node-to-node connections no rule steered into the mesh (`ss` in every node)."""
        return scan_ss(self.run, self.ips, self.redirected())

    def teardown(self) -> None:
        """Remove our nat rules, then delete the proxies."""
        try:
            self.remove_rules()
        finally:
            super().teardown()
