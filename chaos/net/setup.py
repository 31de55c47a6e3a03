"""Build the network layer of a run: the chosen backend, its proxies or rules, its evidence.

`build_net` is what chaos.run's `_setup_net` calls. Without any network fault in the schedule
every backend degrades to "none" (real addresses, nothing in between), as before.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chaos.errors import ChaosError, SetupError
from chaos.net.base import NetSetup, as_endpoints
from chaos.net.evidence import Evidence, scan_proc, scan_ss
from chaos.target import Addr, Endpoints


def controller_address(runtime: Any, node: str) -> str:
    """The controller's IP as `node`'s host sees it (the client end of our SSH session)."""
    res = runtime.run(node, "echo $SSH_CONNECTION", timeout=15)
    words = res.out.split() if res.ok else []
    if len(words) < 4:
        raise SetupError(f"cannot tell the controller's address as {node} sees it "
                         f"($SSH_CONNECTION: {res.out.strip()[:80] or res.err.strip()[:80]!r})")
    return words[0].removeprefix("::ffff:")


def proxy_server(runtime: Any, nodes: list[str] | None = None) -> tuple[Any, str, str]:
    """(ProxyClient, listen host, advertise host) of the proxy server the nodes can reach.

    runtime.proxy_server() places it (docker: its own container); None means the controller
    runs it: on the local runtime the embedded server on 127.0.0.1 (or a real Toxiproxy at
    $TOXIPROXY_URL); on a remote runtime (ssh) the embedded server bound to the controller's
    address as the first node's host sees it, so every host can dial the proxies and the
    proxies' own connections leave from the controller (never redirected by the nodes' rules).
    """
    from chaos.net.client import ProxyClient, connect_or_start

    place = getattr(runtime, "proxy_server", None)
    if place is not None:
        where = place()
        if where is not None:
            return ProxyClient(where.url), where.listen_host, where.advertise_host
    elif hasattr(runtime, "start_proxy_container"):  # before the Runtime protocol had it
        url = runtime.start_proxy_container()
        return ProxyClient(url), "0.0.0.0", runtime.host("proxy")
    if getattr(runtime, "name", "local") != "local" and nodes:
        from chaos.net.proxy.server import ServerThread

        ip = controller_address(runtime, nodes[0])
        try:
            server = ServerThread(ip, 0).start()
        except OSError as exc:
            raise SetupError(f"cannot start the embedded proxy server on {ip}: {exc}") from None
        client = ProxyClient(server.url)
        client._embedded = server
        return client, ip, ip
    try:
        client = connect_or_start()
    except ChaosError:
        raise
    except Exception as exc:
        raise SetupError(f"cannot start the embedded Toxiproxy server: {exc}") from exc
    return client, "127.0.0.1", "127.0.0.1"


def _scanner(runtime: Any, real: Endpoints) -> Any:
    """The bypass scan for the explicit mesh on this runtime (None: none possible)."""
    nodes = list(real)
    if getattr(runtime, "name", "") == "local":
        return lambda: scan_proc({n: runtime.data_dir(n) for n in nodes})
    if hasattr(runtime, "run"):
        ips = {n: real[n].host for n in nodes}
        return lambda: scan_ss(runtime.run, ips, set())
    return None


def build_net(backend: str, runtime: Any, real: Endpoints | Mapping[str, Addr], *,
              needs_net: bool, placements: Iterable[str] = (), tag: str = "test") -> NetSetup:
    """The NetSetup of `backend` (a chaos.net.base.BACKENDS name, already chosen)."""
    real = as_endpoints(real)
    if backend == "none" or not needs_net:
        return NetSetup("none", real)
    if backend == "iptables":
        from chaos.net.iptables import IptablesNet

        net = IptablesNet(runtime.run, {n: real[n].host for n in real}, f"chaos:{tag}")
        return NetSetup("iptables", real, faults=net, evidence=Evidence(net),
                        _closers=[net.teardown])
    from chaos.net.mesh import Mesh
    from chaos.net.transparent import TransparentMesh

    client, listen_host, advertise_host = proxy_server(runtime, list(real))
    placements = list(placements)
    mesh: Mesh
    scan: Any
    if backend == "transparent":
        mesh = TransparentMesh(client, real, runtime.run, listen_host=listen_host,
                               advertise_host=advertise_host, tag=tag, placements=placements)
        scan = mesh.bypass
    else:
        mesh = Mesh(client, real, listen_host, advertise_host=advertise_host,
                    placements=placements)
        scan = _scanner(runtime, real)
    try:
        mesh.setup()
    except BaseException:
        try:
            mesh.teardown()
        finally:
            client.close()
        raise
    setup = NetSetup(backend, real, faults=mesh, evidence=Evidence(mesh, scan=scan),
                     _closers=[client.close, mesh.teardown])
    setup._peer = mesh.peer_addr
    setup._client = lambda dst, port, placement: mesh.client_addr(dst, port, placement)
    return setup
