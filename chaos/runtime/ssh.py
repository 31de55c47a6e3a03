"""The `ssh` runtime: nodes on existing Debian hosts, Jepsen-style, for clusters bigger than one
machine.

The same control layer as the docker runtime (paramiko sessions, chaos.control.remote): at
setup it connects to every host, uploads chaos/ and targets/ (.py only) to `code_dir`, and
empties each node's data dir; services are started in the background and killed / paused /
resumed by signals to their process groups over SSH. The hosts need python3, the target's
binaries (`check_binaries` names the Debian package of any missing one) and, for the nat-based
net backends, iptables and root. Teardown SIGKILLs what we started and closes the sessions; it
leaves the data dirs for inspection (the next setup empties them).
"""
from __future__ import annotations

from collections.abc import Mapping

from chaos.control.remote import (CODE_DIR, DATA_ROOT, RemoteNodeControl, RemoteProcesses,
                                  code_archive, parallel)
from chaos.control.ssh import SshSession, load_key
from chaos.errors import SetupError
from chaos.runtime.base import NAT, OWN_ADDRESS, ProxyPlacement


def read_nodes_file(path: str) -> dict[str, str]:
    """`--nodes-file`: one host per line (`host` or `name host`); names default to n1..nN."""
    from chaos.errors import BadInput

    hosts: dict[str, str] = {}
    try:
        lines = open(path).read().splitlines()
    except OSError as exc:
        raise BadInput(f"cannot read nodes file: {exc.strerror}", where=path) from None
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) > 2:
            raise BadInput(f"expected `host` or `name host`, got {line!r}",
                           where=f"{path}:{number}")
        name, host = (words if len(words) == 2 else (f"n{len(hosts) + 1}", words[0]))
        if name in hosts:
            raise BadInput(f"node {name} listed twice", where=f"{path}:{number}")
        hosts[name] = host
    if not hosts:
        raise BadInput("no hosts in nodes file", where=path)
    return hosts


class SshRuntime(RemoteNodeControl):
    """Nodes on hosts reached over SSH with a key (no passwords)."""

    name = "ssh"

    def __init__(self, hosts: dict[str, str], user: str, key_path: str, port: int = 22, *,
                 code_dir: str = CODE_DIR, data_root: str = DATA_ROOT,
                 connect_timeout: float = 15.0):
        self.hosts = dict(hosts)
        self.user = user
        self.key_path = key_path
        self.port = port
        self.connect_timeout = connect_timeout
        self.procs = RemoteProcesses({}, code_dir=code_dir, data_root=data_root)
        self._order: list[str] = []
        #: nat rules need root on the hosts
        self.capabilities = frozenset({OWN_ADDRESS} | ({NAT} if user == "root" else set()))

    def setup(self, nodes: list[str], store_dir: str) -> None:
        """Connect to each node's host, upload the code, empty its data dir; all or nothing."""
        missing = [n for n in nodes if n not in self.hosts]
        if missing:
            raise SetupError(f"no host for node(s) {', '.join(missing)}: "
                             "add them to the nodes file")
        key = load_key(self.key_path)
        self._code = code_archive()

        def one(node: str) -> None:
            session = SshSession(self.hosts[node], self.user, key, self.port)
            session.connect(timeout=self.connect_timeout)
            self.procs.attach(node, session, self._code)
        try:
            parallel(one, nodes)
        except BaseException:
            self.teardown()
            raise
        self._order = list(nodes)

    def nodes(self) -> list[str]:
        return list(self._order)

    def check_binaries(self, binaries: Mapping[str, str]) -> None:
        """`command -v` on every host; one SetupError naming the packages to install."""
        self.check_hosts_binaries(self._order, binaries)

    def proxy_server(self) -> ProxyPlacement | None:
        return None  # the controller runs its own embedded proxy server

    def host(self, node: str) -> str:
        try:
            return self.hosts[node]
        except KeyError:
            raise SetupError(f"unknown node {node!r}") from None

    def teardown(self) -> None:
        """SIGKILL every node process we started, close the sessions. Idempotent."""
        try:
            self.procs.kill_all()
        finally:
            self.procs.close()
            self.procs.sessions.clear()


def clean_hosts(hosts: dict[str, str], user: str, key_path: str, port: int = 22,
                data_root: str = DATA_ROOT, connect_timeout: float = 15.0) -> tuple[int, int]:
    """`chaos down` for SSH hosts: delete every chaos iptables rule, SIGKILL leftover nodes.

    A service process is recognised by its pid file `<data_root>/<node>/<service>.pid` AND its
    working directory being that node dir (so a recycled pid is never killed). Returns
    (rules deleted, processes killed) over all hosts.
    """
    import shlex

    from chaos.net.iptables import down_script, heal_result

    key = load_key(key_path)
    root = shlex.quote(data_root)
    kill = (
        f"for f in {root}/*/*.pid; do [ -s \"$f\" ] || continue; p=$(cat \"$f\"); "
        '[ "$(readlink /proc/$p/cwd 2>/dev/null)" = "$(dirname "$f")" ] || continue; '
        'kill -KILL -- -$p 2>/dev/null || kill -KILL $p 2>/dev/null; echo killed; done'
    )

    def one(name: str) -> tuple[int, int]:
        session = SshSession(hosts[name], user, key, port).connect(timeout=connect_timeout)
        try:
            has_iptables = session.run("command -v iptables >/dev/null").ok
            rules = heal_result(name, session.run(down_script(), timeout=60)) if has_iptables else 0
            killed = session.run(kill, timeout=60).out.split().count("killed")
            return rules, killed
        finally:
            session.close()

    results = parallel(one, list(hosts))
    return sum(r for r, _ in results.values()), sum(k for _, k in results.values())
