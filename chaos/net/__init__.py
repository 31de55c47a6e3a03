"""Network faults between nodes (DESIGN §3 Net).

    chaos.net.base         the backend protocol and capabilities, choose_backend, NetSetup
    chaos.net.proxy        the embedded Toxiproxy-compatible server (standard library only)
    chaos.net.client       ProxyClient, connect_or_start(): real Toxiproxy at $TOXIPROXY_URL
                           or embedded
    chaos.net.mesh         Mesh: a proxy per directed link and port; partition / cut / latency
                           / heal / verify
    chaos.net.transparent  the same mesh behind nat rules in the nodes (peers keep real addresses)
    chaos.net.iptables     DROP rules inside the nodes (partitions only)
    chaos.net.evidence     did the faults touch the target's traffic? (traffic counters,
                           bypass scans)

Kept import-free: `python3 -m chaos.net.proxy` runs in bare containers and imports this package;
`chaos.net.BACKENDS`, `choose_backend`, `describe_backends` and `NetSetup` load chaos.net.base on
first use.
"""
from typing import Any

_LAZY = ("BACKENDS", "BackendInfo", "NetSetup", "NetFaults", "choose_backend", "describe_backends",
         "CAPABILITIES", "NET_CHOICES")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from chaos.net import base

        return getattr(base, name)
    raise AttributeError(f"module 'chaos.net' has no attribute {name!r}")
