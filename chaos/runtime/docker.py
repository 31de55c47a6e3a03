"""The `docker` runtime: one container per node on a private network, driven over SSH.

Lifecycle (setup): engine ping -> node image (built if missing) -> per-store SSH key ->
network `chaos-<test>` -> containers `chaos-<test>-<node>` (hostname = node name, sshd as the
command under docker-init, the public key in CHAOS_AUTHORIZED_KEY) -> SSH to each container's
IP -> upload chaos/ and targets/ (.py only) to /opt/chaos -> empty data dirs. Code is uploaded,
not baked, so editing Python needs no image rebuild.

Every container and network carries the labels `chaos.managed=1` and `chaos.test=<id>`, so
`remove_test_resources` (and `chaos down`) finds what any test left, even after the controller
was SIGKILLed. Containers get NET_ADMIN only when asked (`net_admin=True`: the iptables and
transparent net backends add rules in each node's own network namespace), and are never
privileged. Node services are controlled by signals over SSH (chaos.control.remote): kill is
SIGKILL to each service's process group, pause is SIGSTOP; the container keeps running so a
killed node can be restarted in place. The image already holds the target's packages
(chaos.images), so `check_binaries` has nothing to check.
"""
from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.control.remote import RemoteNodeControl, RemoteProcesses, code_archive, parallel
from chaos.control.ssh import SshSession, ensure_keypair, load_key
from chaos.errors import ChaosError, SetupError
from chaos.runtime.base import NAT, OWN_ADDRESS, ProxyPlacement
from chaos.runtime.owner import controller_labels
from chaos.target import Service

if TYPE_CHECKING:
    import paramiko

MANAGED = "chaos.managed"
TEST = "chaos.test"
NODE = "chaos.node"
PROXY_NODE = "proxy"
PROXY_PORT = 8474


def remove_test_resources(client, test_id: str | None = None) -> tuple[int, int]:
    """Force-remove every container, then every network, labelled by chaos (one test or all).

    Containers go in parallel with `remove(force=True)` (SIGKILL, no grace period): their
    iptables rules live in their own network namespace and vanish with them. Returns
    (containers removed, networks removed). Idempotent.
    """
    import docker.errors

    label = f"{TEST}={test_id}" if test_id else f"{MANAGED}=1"
    containers = client.containers.list(all=True, filters={"label": label})

    def remove(container) -> int:
        try:
            container.remove(force=True)
            return 1
        except docker.errors.NotFound:
            return 0
        except docker.errors.APIError as exc:
            if "already in progress" in str(exc):
                return 0
            raise

    by_id = {c.id: c for c in containers}
    removed = sum(parallel(lambda cid: remove(by_id[cid]), by_id).values())
    nets = 0
    for network in client.networks.list(filters={"label": label}):
        try:
            network.remove()
            nets += 1
        except docker.errors.NotFound:
            pass
    return removed, nets


class DockerRuntime(RemoteNodeControl):
    """Nodes in containers. Logs: /var/lib/chaos/<node>/<service>.out inside, copied by
    collect_logs.

    target: the target whose node image to use (a name or reference chaos.plugins resolves,
    or a target object); net_admin: give containers NET_ADMIN (capability "nat").
    """

    name = "docker"

    def __init__(self, target: Any = "kvlite", *, test_id: str | None = None,
                 net_admin: bool = False, image: str | None = None, build: bool = True,
                 progress=None, ssh_timeout: float = 30.0, client=None):
        self.target = target
        self.test_id = test_id or f"{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"
        self.net_admin = net_admin
        self.capabilities = frozenset({OWN_ADDRESS} | ({NAT} if net_admin else set()))
        self.image = image
        self.build = build
        self.progress = progress or (lambda _line: None)
        self.ssh_timeout = ssh_timeout
        self._client = client
        self._network = None
        self._containers: dict[str, object] = {}
        self._ips: dict[str, str] = {}
        self._order: list[str] = []
        self._pubkey = ""
        self._code = b""
        self._key: paramiko.PKey | None = None
        self._lock = threading.Lock()
        self.procs = RemoteProcesses({})

    # -- engine and image ------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            from chaos.control.engine import docker_client

            self._client = docker_client()
        return self._client

    @property
    def network_name(self) -> str:
        return f"chaos-{self.test_id}"

    @property
    def target_name(self) -> str:
        return self.target if isinstance(self.target, str) else self.target.name

    def _ensure_image(self) -> str:
        from chaos.images import ensure_node_image, find_node_image

        if self.image:
            import docker.errors

            try:
                self.client.images.get(self.image)
            except docker.errors.ImageNotFound:
                raise SetupError(f"docker image {self.image} not found: run `chaos image build "
                                 f"--target {self.target_name}`") from None
            return self.image
        tag = find_node_image(self.client, self.target)
        if tag is None:
            if not self.build:
                raise SetupError(f"no node image for {self.target_name}: run `chaos image build "
                                 f"--target {self.target_name}` first")
            tag = ensure_node_image(self.client, self.target, progress=self.progress)
        self.image = tag
        return tag

    # -- setup -----------------------------------------------------------------------------

    def setup(self, nodes: list[str], store_dir: str) -> None:
        """Network, containers, SSH and code for `nodes`; on any failure nothing is left."""
        import docker.errors

        #: the run directory node files are collected into before the containers go (named
        #: in start-up errors: the data dir inside a container is gone by then)
        self.stored_logs = str(Path(store_dir).resolve())
        try:
            self._ensure_image()
            key_path, self._pubkey = ensure_keypair(store_dir)
            self._key = load_key(key_path)
            self._network = self.client.networks.create(
                self.network_name, driver="bridge", check_duplicate=True,
                labels={MANAGED: "1", TEST: self.test_id, **controller_labels()},
            )
            self._order = list(nodes)
            self._code = code_archive()
            self.progress(f"docker: network {self.network_name}, {len(nodes)} containers")
            parallel(self._add_node, nodes)
        except docker.errors.APIError as exc:
            self.teardown()
            raise SetupError(f"docker runtime setup failed: {exc.explanation or exc}") from None
        except BaseException:
            self.teardown()
            raise

    def _add_node(self, node: str) -> None:
        """One container for `node`, reachable over SSH, with our code and an empty data dir."""
        container = self.client.containers.run(
            self.image, detach=True, name=f"{self.network_name}-{node}", hostname=node,
            network=self.network_name, init=True,
            labels={MANAGED: "1", TEST: self.test_id, NODE: node, **controller_labels()},
            environment={"CHAOS_AUTHORIZED_KEY": self._pubkey},
            cap_add=["NET_ADMIN"] if self.net_admin else None,
        )
        with self._lock:
            self._containers[node] = container
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][self.network_name]["IPAddress"]
        if not ip:
            raise SetupError(f"container for {node} got no IP on {self.network_name}")
        if self._key is None:  # setup loads it before adding nodes
            raise SetupError(f"docker runtime: no SSH key to reach {node} (setup did not run)")
        session = SshSession(ip, "root", self._key).connect(timeout=self.ssh_timeout)
        with self._lock:
            self._ips[node] = ip
        self.procs.attach(node, session, self._code)

    # -- the Runtime protocol --------------------------------------------------------------

    def host(self, node: str) -> str:
        try:
            return self._ips[node]
        except KeyError:
            raise SetupError(f"unknown node {node!r} (not set up)") from None

    def check_binaries(self, binaries: Mapping[str, str]) -> None:
        """Nothing to check: the node image was built with the target's packages."""

    def nodes(self) -> list[str]:
        """The node names set up, in the order given to setup (the proxy container excluded)."""
        return [n for n in self._order if n in self._ips]

    def teardown(self) -> None:
        """Close SSH, force-remove this test's containers and network. Idempotent."""
        try:
            self.procs.close()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass
        self.procs = RemoteProcesses({})
        self._ips.clear()
        self._order = []
        self._containers.clear()
        self._network = None
        if self._client is None:
            return
        try:
            remove_test_resources(self._client, self.test_id)
        except ChaosError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SetupError(f"docker teardown of {self.test_id} failed ({exc}): "
                             "run `chaos down`") from None

    # -- proxy container -------------------------------------------------------------------

    def proxy_server(self) -> ProxyPlacement:
        """The embedded proxy server in its own container on the nodes' network."""
        url = self.start_proxy_container()
        return ProxyPlacement(url, listen_host="0.0.0.0", advertise_host=self.host(PROXY_NODE))

    def start_proxy_container(self, port: int = PROXY_PORT, timeout: float = 20.0) -> str:
        """Run the embedded proxy server (`python3 -m chaos.net.proxy`) in its own container.

        Same image, same network, same labels; returns the API URL (http://<ip>:<port>). The
        proxies it creates listen on that container's IP (`self.host("proxy")`).
        """
        if PROXY_NODE not in self._ips:
            if not self._code:
                raise SetupError("start_proxy_container() needs setup() first")
            try:
                self._add_node(PROXY_NODE)
            except BaseException:
                self.teardown()
                raise
        ip = self._ips[PROXY_NODE]
        if not self.procs.is_running(PROXY_NODE):
            self.procs.start(PROXY_NODE, Service(PROXY_NODE, [
                "python3", "-m", "chaos.net.proxy", "--host", "0.0.0.0", "--port", str(port)],
                ready_port=None))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((ip, port), timeout=1):
                    return f"http://{ip}:{port}"
            except OSError:
                if not self.procs.is_running(PROXY_NODE) or time.monotonic() > deadline:
                    tail = self.run(PROXY_NODE, f"tail -n 3 {PROXY_NODE}.out")
                    raise SetupError(f"the proxy container did not answer on {ip}:{port}: "
                                     f"{tail.out.strip()[-300:] or 'no output'}") from None
                time.sleep(0.1)
