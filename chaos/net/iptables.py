"""The iptables net backend: partitions as DROP rules inside the nodes' own network stacks.

For targets whose peers cannot be pointed at proxies (e.g. Redis Sentinel discovers peers by
their real addresses). A cut a->b is one rule on b: `INPUT -s <ip of a> -j DROP`, so b never
sees a's packets (for TCP that breaks connections both ways, as in Jepsen). Every rule carries
the comment `chaos:<tag>`; heal removes exactly the rules with our tag and nothing else, so it
is safe on shared hosts and after a crash (`IptablesNet(...).heal()` with the same tag).
In Docker the containers need NET_ADMIN (`DockerRuntime(net_admin=True)`); on SSH hosts the
user must be root. The method names follow the proxy mesh's fault ops.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable

from chaos.control.remote import parallel
from chaos.control.ssh import Result
from chaos.errors import SetupError

Runner = Callable[..., Result]  # runner(node, command, timeout=..., check=...) -> Result


#: an ERE matching any chaos rule comment, as `iptables -S` prints it (for `chaos down`)
ANY_CHAOS = '--comment "?chaos(:[^ "]*)?"?( |$)'
#: the same for the transparent mesh's nat rules (chaos.net.transparent.TAG_PREFIX)
ANY_CHAOS_MESH = '--comment "?chaos-mesh(:[^ "]*)?"?( |$)'


def down_script() -> str:
    """`chaos down` on a host: every chaos DROP rule (filter INPUT) and every transparent-mesh
    nat rule (nat OUTPUT), one "deleted" line per rule (see `heal_result`)."""
    return (f"{{ {heal_script()}; {heal_script(ANY_CHAOS_MESH, table='nat', chain='OUTPUT')}; }}")


def heal_script(pattern: str = ANY_CHAOS, table: str = "filter", chain: str = "INPUT") -> str:
    """A shell script deleting every rule of `table`/`chain` matching `pattern`.

    It prints one "deleted" line per rule and "FAILED <rule>" when a deletion fails (the exit
    status of a pipeline loop is not portable, so the output carries it): see `heal_result`.
    The transparent mesh uses it for its nat OUTPUT rules (`chaos down`: both tables).
    """
    t = f"-t {shlex.quote(table)} "
    return (
        f"iptables -w {t}-S {shlex.quote(chain)} | grep -E -- {shlex.quote(pattern)} | "
        "sed 's/^-A /-D /' | "
        f'while read -r rule; do if eval iptables -w {t}$rule; then echo deleted; '
        'else echo "FAILED $rule"; fi; done'
    )


def heal_result(node: str, res: Result) -> int:
    """The number of rules a `heal_script` run deleted; SetupError when one could not be."""
    failed = [line for line in res.out.splitlines() if line.startswith("FAILED")]
    if failed or not res.ok:
        detail = failed[0] if failed else (res.err or res.out).strip()[:200]
        raise SetupError(f"removing chaos iptables rules on {node} failed: {detail} "
                         f"{res.err[:200]}")
    return res.out.split().count("deleted")


class IptablesNet:
    """Cut links between nodes with tagged iptables rules, run on each node over SSH.

    Fault-effect evidence (`traffic()`): the packets our DROP rules matched, per link,
    summed over the run (read from the rule counters before a heal deletes them): a cut
    that dropped nothing did not touch the target's traffic.
    """

    backend = "iptables"
    capabilities = frozenset({"partition", "one-way", "evidence"})

    def __init__(self, run: Runner, hosts: dict[str, str], tag: str = "chaos"):
        self._run = run
        self.hosts = dict(hosts)
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", tag):
            raise SetupError(f"iptables tag {tag!r}: use letters, digits and _.:- only")
        self.tag = tag
        self.cuts: set[tuple[str, str]] = set()
        self._dropped: dict[tuple[str, str], int] = {}  # packets dropped by deleted rules

    @classmethod
    def for_runtime(cls, runtime, nodes: Iterable[str] | None = None, tag: str | None = None
                    ) -> IptablesNet:
        """Built on a runtime with `run(node, cmd)` and `host(node)` (docker or ssh)."""
        names = list(nodes) if nodes is not None else runtime.nodes()
        return cls(runtime.run, {n: runtime.host(n) for n in names},
                   tag or f"chaos:{getattr(runtime, 'test_id', 'test')}")

    @property
    def comment(self) -> str:
        return self.tag if self.tag.startswith("chaos") else f"chaos:{self.tag}"

    def _rule(self, src: str) -> str:
        return (f"-s {shlex.quote(self.hosts[src])}/32 -m comment "
                f"--comment {shlex.quote(self.comment)} -j DROP")

    def _apply(self, dst: str, sources: list[str]) -> None:
        if not sources:
            return
        cmd = " && ".join(f"iptables -w -A INPUT {self._rule(s)}" for s in sources)
        res = self._run(dst, cmd, timeout=30)
        if not res.ok:
            raise SetupError(
                f"iptables on {dst} failed: {(res.err or res.out).strip()[:200]} (the container "
                "needs NET_ADMIN: DockerRuntime(net_admin=True); on SSH hosts log in as root)"
            )

    def _check_node(self, node: str) -> None:
        if node not in self.hosts:
            raise SetupError(f"unknown node {node!r} for the iptables backend")

    def cut(self, src: str, dst: str) -> dict:
        """Drop every packet from src arriving at dst (one-way at the IP level)."""
        self._check_node(src)
        self._check_node(dst)
        if (src, dst) not in self.cuts:
            self._apply(dst, [src])
            self.cuts.add((src, dst))
        return {"cut": [src, dst], "one_way": True}

    def partition(self, groups: list[list[str]], mode: str = "drop") -> dict:
        """Heal, then cut every pair of nodes that no group holds together (both directions).

        Groups may overlap (bridge, majorities-ring), as in the proxy mesh: two nodes keep
        talking exactly when some group contains both. DROP rules make every mode "drop"
        (connects time out rather than being refused); `mode` is accepted for the protocol.
        """
        for group in groups:
            for node in group:
                self._check_node(node)
        self.heal()
        members = sorted({n for g in groups for n in g})
        together = {(a, b) for g in groups for a in g for b in g}
        wanted: dict[str, list[str]] = {
            dst: [src for src in members if src != dst and (src, dst) not in together]
            for dst in members}
        parallel(lambda dst: self._apply(dst, wanted[dst]), [d for d in wanted if wanted[d]])
        self.cuts = {(src, dst) for dst, srcs in wanted.items() for src in srcs}
        return {"cut": sorted([list(c) for c in self.cuts])}

    def shape(self, name: str, rng, leader: str | None = None) -> list[list[str]]:
        """Groups for a named partition shape (chaos.faults.shapes, as every backend)."""
        from chaos.faults.shapes import partition_shape

        return partition_shape(list(self.hosts), name, rng, leader)

    def latency(self, links, ms: int, jitter_ms: int = 0) -> dict:
        """Not possible with iptables alone (tc netem is not available): use the proxy mesh."""
        raise SetupError("latency faults need a proxy mesh (--net proxy or transparent); the "
                         "iptables backend only cuts links")

    def bandwidth(self, links, rate_kb: int) -> dict:
        raise SetupError("bandwidth faults need a proxy mesh (--net proxy or transparent)")

    def reset(self, links=None) -> dict:
        raise SetupError("reset faults need a proxy mesh (--net proxy or transparent)")

    def _counters(self) -> dict[tuple[str, str], int]:
        """Packets matched by our live DROP rules, per (src, dst) link."""
        by_ip = {ip: n for n, ip in self.hosts.items()}

        def one(node: str) -> dict[tuple[str, str], int]:
            res = self._run(node, "iptables -w -S INPUT -v", timeout=30)
            if not res.ok:
                raise SetupError(f"iptables -S -v on {node} failed: {(res.err or res.out)[:200]}")
            out: dict[tuple[str, str], int] = {}
            for line in res.out.splitlines():
                m = re.search(r"-s (\S+)/32 .*-c (\d+) \d+", line)
                if m and re.search(self._pattern(), line) and m.group(1) in by_ip:
                    link = (by_ip[m.group(1)], node)
                    out[link] = out.get(link, 0) + int(m.group(2))
            return out
        total: dict[tuple[str, str], int] = {}
        for counts in parallel(one, [d for d in self.hosts if any(c[1] == d for c in self.cuts)]
                               ).values():
            for link, n in counts.items():
                total[link] = total.get(link, 0) + n
        return total

    def traffic(self) -> dict[tuple[str, str], int] | None:
        """Packets our rules dropped per link over the run (cut links only count)."""
        live = self._counters() if self.cuts else {}
        links = set(self._dropped) | set(live)
        return {l: self._dropped.get(l, 0) + live.get(l, 0) for l in links}

    def bypass(self) -> list[str]:
        return []  # DROP rules act on every packet between the nodes' addresses

    def teardown(self) -> None:
        self.heal()

    def isolate(self, node: str) -> None:
        """Partition `node` from all the others."""
        self.partition([[node], [n for n in self.hosts if n != node]])

    def _pattern(self) -> str:
        """An ERE matching our comment as `iptables -S` prints it (quoted or not)."""
        escaped = self.comment.replace(".", "\\.")
        return f'--comment "?{escaped}"?( |$)'

    def _our_rules(self, node: str) -> list[str]:
        res = self._run(node, "iptables -w -S INPUT", timeout=30)
        if not res.ok:
            raise SetupError(f"iptables -S on {node} failed: {(res.err or res.out).strip()[:200]}")
        return [line for line in res.out.splitlines() if re.search(self._pattern(), line)]

    def heal(self) -> dict:
        """Delete every INPUT rule with our comment on every node (ours only; idempotent)."""
        if self.cuts:
            try:
                for link, n in self._counters().items():
                    self._dropped[link] = self._dropped.get(link, 0) + n
            except SetupError:
                pass  # counters lost: the evidence reads as "dropped nothing" for them
        script = heal_script(self._pattern())

        def one(node: str) -> None:
            heal_result(node, self._run(node, script, timeout=30))
        parallel(one, list(self.hosts))
        self.cuts = set()
        return {"heal": True}

    def verify(self) -> list[str]:
        """Problems found comparing the rules on the nodes with the cuts we made ([] = verified)."""
        problems: list[str] = []
        rules = parallel(self._our_rules, list(self.hosts))
        for dst, lines in rules.items():
            have = {src for src, ip in self.hosts.items()
                    if any(f"-s {ip}/32 " in line for line in lines)}
            want = {src for src, d in self.cuts if d == dst}
            for src in sorted(want - have):
                problems.append(f"cut {src}->{dst} missing on {dst}")
            for src in sorted(have - want):
                problems.append(f"unexpected cut {src}->{dst} on {dst}")
        return problems
