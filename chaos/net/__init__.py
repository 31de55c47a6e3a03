"""Network faults between nodes (DESIGN §3 Net).

    chaos.net.proxy     the embedded Toxiproxy-compatible server (standard library only)
    chaos.net.client    ProxyClient, connect_or_start(): real Toxiproxy at $TOXIPROXY_URL or embedded
    chaos.net.mesh      Mesh: a proxy per directed link; partition / cut / latency / heal / verify
    chaos.net.iptables  the second backend, inside containers

Kept import-free: `python3 -m chaos.net.proxy` runs in bare containers and imports this package.
"""
