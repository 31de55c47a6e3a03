"""An embedded Toxiproxy-compatible server (standard library only, asyncio).

Speaks the Toxiproxy 2.12 HTTP API (proxies, toxics, /populate, /reset, /version) so the real
toxiproxy clients work against it; used when no real Toxiproxy answers at TOXIPROXY_URL, and
run standalone with `python3 -m chaos.net.proxy` (inside bare containers) or `chaos proxy serve`.

    ProxyServer(host, port)   the asyncio server (await start() / close())
    ServerThread(host, port)  the same on a background thread: start() / stop() / url

Our one extension of the API: every proxy JSON carries `chaos_traffic` = {"accepted":
connections accepted, "upstream_bytes": bytes received from clients, "downstream_bytes":
bytes received from the upstream, "live": open connections}, counted since the proxy was
created (surviving disable/enable and toxics). Toxiproxy clients ignore unknown fields; the
real Toxiproxy has no such field, and chaos.net.evidence then reports the fault effect as
unmeasured (not proven) rather than guessing.
"""
from __future__ import annotations

from chaos.net.proxy.server import VERSION, ProxyServer, ServerThread

__all__ = ["VERSION", "ProxyServer", "ServerThread"]
