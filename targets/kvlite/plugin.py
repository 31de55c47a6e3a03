"""KvliteTarget: kvlite as a chaos.target.Target (registered as entry point `kvlite`).

A node is one service, MAIN, run as `python -c <bootstrap> --name ... --listen ... --peer ...`:
the bootstrap puts the code root (the directory holding the `targets` package) on sys.path,
so the command works from any working directory on any host.

Which interpreter: `KvliteTarget(python=...)` if given, else `-O python=...` if set, else the
one the runtime names in NodeConfig.python (the controller's own locally, python3 in containers
and on SSH hosts). Which code root: `KvliteTarget(code_root=...)`, else NodeConfig.code_root
(the runtime's copy of chaos/ and targets/), else this checkout.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaos.errors import BadInput
from chaos.target import MAIN, BaseTarget, Endpoints, NodeConfig, OptionSpec

from .client import KvliteClient, call
from .membership import KvliteMembership

_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from targets.kvlite.server import main; main(sys.argv[1:])")


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


class KvliteTarget(BaseTarget):
    """The built-in leader-follower key-value target (DESIGN §6)."""

    name = "kvlite"
    workloads = frozenset({"register", "set"})
    supports_mesh = True
    #: one Python process (libc clocks: libfaketime skews it); a wiped node rejoins as a
    #: learner (--rejoin) and status reports log_position
    faults = frozenset({"clock", "member"})
    #: voters are configuration entries in the log (config.py): `--nemesis membership`
    membership = KvliteMembership()
    ports: Mapping[str, int] = {MAIN: 7000}
    options: Mapping[str, OptionSpec] = {
        "replication": OptionSpec("async", "when the leader acks a write: after its own append "
                                  "(async), every follower (sync), one synchronous follower "
                                  "(semi-sync) or a majority (quorum)",
                                  ("async", "sync", "semi-sync", "quorum")),
        "failover": OptionSpec("naive", "none; naive (most up-to-date reachable follower "
                               "promotes itself, no terms, no fencing); majority (Raft-style "
                               "terms and votes, leader lease)", ("none", "naive", "majority")),
        "read_from": OptionSpec("leader", "which nodes serve reads", ("leader", "any")),
        "routing": OptionSpec("client", "client: followers answer 'not leader, leader is X'; "
                              "forward: followers forward to the leader", ("client", "forward")),
        "heartbeat_ms": OptionSpec(100, "leader heartbeat interval (ms)", None, int, min=1),
        "election_timeout_ms": OptionSpec(1000, "leader silence before failover (ms)", None, int,
                                          min=1),
        "fsync": OptionSpec("never", "fsync the log before acking (group commit)",
                            ("always", "never")),
        "snapshot_every": OptionSpec(10000, "compact the log after this many entries", None, int,
                                     min=1),
        "replication_lag_ms": OptionSpec(50, "asynchronous followers get log batches at most "
                                         "this often (0 = at once): the async replication lag",
                                         None, int, min=0),
        "python": OptionSpec("", "interpreter that runs nodes ('' = the runtime's: this one "
                             "for local nodes, python3 on remote ones)"),
        "timeout": OptionSpec(1.0, "how long the client waits for a reply (s); no answer "
                              "-> info. chaos run's --op-timeout still ends every op at its "
                              "own limit: the shorter of the two wins",
                              None, float, check=_positive),
    }

    def __init__(self, python: str | None = None, code_root: str | None = None):
        #: the interpreter that runs nodes; None = NodeConfig.python (see the module doc)
        self.python = python
        #: the directory holding the `targets` package on the node's host; None = NodeConfig's
        self.code_root = code_root

    def validate_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The default validator, then kvlite's cross-option rules (timing must fit)."""
        opts = super().validate_options(raw)
        if opts["heartbeat_ms"] * 2 > opts["election_timeout_ms"]:
            raise BadInput(f"-O election_timeout_ms={opts['election_timeout_ms']}: must be at "
                           f"least twice heartbeat_ms ({opts['heartbeat_ms']})")
        if (opts["heartbeat_ms"] + opts["replication_lag_ms"]) * 2 > opts["election_timeout_ms"]:
            raise BadInput(f"-O replication_lag_ms={opts['replication_lag_ms']}: heartbeat_ms + "
                           f"replication_lag_ms must be at most half of election_timeout_ms "
                           f"({opts['election_timeout_ms']}), or followers fail over when idle")
        return opts

    def start_command(self, node: NodeConfig) -> list[str]:
        o = {k: s.default for k, s in self.options.items()}
        o.update(node.options)
        names = sorted([node.name, *node.peers])
        python = self.python or o.get("python") or node.python
        root = self.code_root or node.code_root or str(Path(__file__).resolve().parents[2])
        argv = [python, "-c", _BOOT.format(root=root),
                "--name", node.name, "--listen", f"{node.listen.host}:{node.listen.port}",
                "--data-dir", node.data_dir,
                "--replication", str(o["replication"]), "--failover", str(o["failover"]),
                "--read-from", str(o["read_from"]), "--routing", str(o["routing"]),
                "--heartbeat-ms", str(int(o["heartbeat_ms"])),
                "--election-timeout-ms", str(int(o["election_timeout_ms"])),
                "--fsync", str(o["fsync"]), "--snapshot-every", str(int(o["snapshot_every"])),
                "--replication-lag-ms", str(int(o["replication_lag_ms"]))]
        if o["failover"] != "majority":
            argv += ["--initial-leader", names[0]]
        if node.rejoin:
            argv.append("--rejoin")
        for peer, addr in sorted(node.peers.items()):
            argv += ["--peer", f"{peer}={addr.host}:{addr.port}"]
        return argv

    def client(self, nodes: Endpoints, options: Mapping[str, Any]) -> KvliteClient:
        return KvliteClient({n: (a.host, a.port) for n, a in nodes.items()},
                            timeout=float(options.get("timeout", 1.0)),
                            routing=str(options.get("routing", "client")),
                            read_from=str(options.get("read_from", "leader")))

    def status(self, node: str, endpoints: Endpoints, timeout: float) -> dict[str, Any]:
        """The node's status dict; raises OSError (or ValueError) when it does not answer."""
        reply = call(endpoints[node], {"op": "status"}, timeout)
        if reply.get("type") != "ok":
            raise ConnectionError(f"{node}: status failed: {reply.get('error')}")
        # the recent-events list stays out: the monitor records every status it gets
        return {k: v for k, v in reply["value"].items() if k != "events"}
