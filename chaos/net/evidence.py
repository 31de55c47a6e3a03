"""Fault-effect evidence: did the network faults touch the target's traffic?

A partition of links the target never uses proves nothing: a run whose node-to-node traffic
bypassed the mesh (a system that dials the addresses its peers announce instead of the ones
it was given) would pass every partition untouched and end "valid". So the mesh keeps two
kinds of evidence, and `Evidence.problems()` turns their absence into unverified faults
(the verdict becomes unknown, with the links named):

- traffic: the embedded proxy server counts connections and bytes per proxy (the
  `chaos_traffic` field of its proxy JSON, our extension). A network fault whose faulted
  links carried no traffic at all over the whole run is not proven to have acted. A server
  that does not report traffic (a real Toxiproxy) leaves the evidence "unmeasured", which
  is reported the same way: not proven. Per fault the sum over its links counts, not each
  link: a TCP link is often used one way only (a Redis master never dials its replicas).
- bypass: node-to-node connections that do not pass through the fault layer, sampled when
  each fault starts and stops and at the end (a scan sees the connections alive at that
  moment: long-lived replication and gossip connections, the usual culprits, are seen;
  a connection opened and closed between two scans is not). Scanners: `scan_proc` (local
  runtime: sockets of node processes via /proc/net/tcp{,6} + /proc/<pid>/fd) and `scan_ss`
  (docker/ssh: `ss -tn` inside each node, connections to another node's address that no
  nat rule redirects).
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Link = tuple[str, str]


@dataclass
class _Window:
    what: str
    links: list[Link]
    start: float
    before: dict[Link, int] | None
    after: dict[Link, int] | None = None


@dataclass
class Evidence:
    """Collects traffic snapshots and bypass scans around each network fault."""

    net: Any  # NetFaults: traffic() -> {link: count} | None
    scan: Callable[[], list[str]] | None = None
    clock: Callable[[], float] = time.monotonic
    windows: list[_Window] = field(default_factory=list)
    bypasses: dict[str, float] = field(default_factory=dict)  # description -> first seen
    _t0: float = field(default_factory=time.monotonic)

    def _traffic(self) -> dict[Link, int] | None:
        try:
            return self.net.traffic()
        except Exception:  # noqa: BLE001 - unreadable counters are "unmeasured"
            return None

    def _scan(self) -> None:
        if self.scan is None:
            return
        try:
            found = self.scan()
        except Exception as exc:  # noqa: BLE001 - a failed scan is itself reported
            found = [f"bypass scan failed: {type(exc).__name__}: {exc}"]
        now = self.clock() - self._t0
        for line in found:
            self.bypasses.setdefault(line, now)

    def begin(self, what: str, links: Iterable[Link]) -> None:
        """A network fault on `links` starts now."""
        self._scan()
        self.windows.append(_Window(what, sorted(set(links)), self.clock() - self._t0,
                                    self._traffic()))

    def end(self) -> None:
        """The open fault (if any) was undone."""
        self._scan()
        if self.windows and self.windows[-1].after is None:
            self.windows[-1].after = self._traffic() or {}

    def problems(self) -> list[str]:
        """What is not proven, one line each ([] = every network fault touched live links)."""
        self._scan()
        final = self._traffic()
        out: list[str] = []
        if self.windows and final is None:
            out.append("fault effect unmeasured: the proxy server does not report traffic "
                       "(a real Toxiproxy has no chaos_traffic counters), so the network "
                       "faults are not proven to have touched the target's traffic")
        elif final is not None:
            for w in self.windows:
                if w.links and sum(final.get(link, 0) for link in w.links) == 0:
                    names = ", ".join(f"{a}->{b}" for a, b in w.links[:12])
                    more = f" (+{len(w.links) - 12} more)" if len(w.links) > 12 else ""
                    out.append(f"{w.what} at {w.start:.1f} s: the faulted links {names}{more} "
                               "carried no traffic over the whole run, so the fault could not "
                               "touch the target's traffic (does it reach its peers at the "
                               "addresses it was given?)")
        for line, seen in sorted(self.bypasses.items(), key=lambda kv: kv[1]):
            out.append(f"node-to-node traffic around the mesh (seen at {seen:.1f} s): {line}; "
                       "network faults cannot act on it")
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per fault: the links and the traffic they carried during the fault (JSON-able)."""
        rows = []
        for w in self.windows:
            during = None
            if w.before is not None and w.after:
                during = sum(w.after.get(l, 0) - w.before.get(l, 0) for l in w.links)
            rows.append({"fault": w.what, "start_s": round(w.start, 3),
                         "links": [list(l) for l in w.links], "traffic_during": during})
        return rows


# -- bypass scanners ---------------------------------------------------------------------------

_STATE_LISTEN, _STATE_ESTABLISHED = "0A", "01"


def _hex_addr(text: str) -> tuple[str, int]:
    """A /proc/net/tcp address "0100007F:1F90" -> ("127.0.0.1", 8080) (IPv6 compressed-ish)."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw[::-1])
    else:
        words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
        ip = ":".join(words)
        if ip.startswith("0000000000000000ffff0000"):
            v4 = bytes.fromhex(words[3])
            ip = ".".join(str(b) for b in v4)
    return ip, int(port, 16)


def _sockets(proc: str = "/proc") -> dict[int, tuple[tuple[str, int], tuple[str, int], str]]:
    """inode -> (local, remote, state) for every TCP socket of this network namespace."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/net/{name}") as table:
                lines = table.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            out[int(parts[9])] = (_hex_addr(parts[1]), _hex_addr(parts[2]), parts[3])
    return out


def _node_inodes(dirs: Mapping[str, str], proc: str = "/proc") -> dict[str, set[int]]:
    """node -> socket inodes of the processes whose working directory is the node's dir."""
    roots = {n: os.path.realpath(d) for n, d in dirs.items()}
    out: dict[str, set[int]] = {n: set() for n in dirs}
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"{proc}/{pid}/cwd")
        except OSError:
            continue
        node = next((n for n, r in roots.items() if cwd == r or cwd.startswith(r + os.sep)), None)
        if node is None:
            continue
        try:
            fds = os.listdir(f"{proc}/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{proc}/{pid}/fd/{fd}")
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", target)
            if m:
                out[node].add(int(m.group(1)))
    return out


def scan_proc(dirs: Mapping[str, str], proc: str = "/proc") -> list[str]:
    """Local runtime: connections of node x straight to a port node y listens on.

    Nodes are recognised by their processes' working directory (the node's data dir, where
    every service runs); a connection through the mesh goes to a proxy's port, which no node
    process listens on, so any x -> listening-port-of-y connection went around it.
    """
    socks = _sockets(proc)
    inodes = _node_inodes(dirs, proc)
    listening = {n: {socks[i][0][1] for i in ino if i in socks and socks[i][2] == _STATE_LISTEN}
                 for n, ino in inodes.items()}
    owner = {port: n for n, ports in listening.items() for port in ports}
    found = set()
    for node, ino in inodes.items():
        for i in ino:
            sock = socks.get(i)
            if sock is None or sock[2] != _STATE_ESTABLISHED:
                continue
            peer = owner.get(sock[1][1])
            if peer is not None and peer != node:
                found.add(f"{node} -> {peer} ({sock[0][0]}:{sock[0][1]} -> "
                          f"{sock[1][0]}:{sock[1][1]}, not a proxy port)")
    return sorted(found)


def parse_ss(text: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """(local, peer) pairs from `ss -Htn state established` output."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local, peer = parts[-2], parts[-1]
        try:
            lh, lp = local.rsplit(":", 1)
            ph, pp = peer.rsplit(":", 1)
            out.append(((lh.strip("[]").removeprefix("::ffff:"), int(lp)),
                        (ph.strip("[]").removeprefix("::ffff:"), int(pp))))
        except ValueError:
            continue
    return out


def bypass_from_ss(node: str, text: str, ips: Mapping[str, str],
                   redirected: set[tuple[str, int]]) -> list[str]:
    """Connections of `node` to another node's address that no nat rule steers into the mesh.

    With the explicit mesh `redirected` is empty: every node-to-node connection bypasses it
    (the mesh's own connections come from the proxy host's address). With the transparent
    mesh the dialer's socket shows the real b_ip:port it dialed (redirected by our rule), and
    the acceptor sees the proxy's address; anything else between node addresses bypassed it.
    """
    by_ip = {ip: n for n, ip in ips.items()}
    found = []
    for local, peer in parse_ss(text):
        other = by_ip.get(peer[0])
        if other is None or other == node or peer in redirected:
            continue
        found.append(f"{node} <-> {other} ({local[0]}:{local[1]} - {peer[0]}:{peer[1]})")
    return found


SS_COMMAND = "ss -Htn state established"


def scan_ss(run: Callable[..., Any], ips: Mapping[str, str],
            redirected: set[tuple[str, int]]) -> list[str]:
    """Docker / SSH: `ss` inside every node (run(node, cmd, timeout=...) -> result)."""
    found: list[str] = []
    for node in ips:
        res = run(node, SS_COMMAND, timeout=15)
        if not getattr(res, "ok", False):
            found.append(f"cannot list {node}'s connections: {(res.err or res.out).strip()[:100]}")
            continue
        found += bypass_from_ss(node, res.out, ips, redirected)
    return sorted(set(found))
