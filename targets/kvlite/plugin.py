"""KvliteTarget: kvlite as a chaos.target.Target (registered as entry point `kvlite`).

The node runs as `python -c <bootstrap> --name ... --listen ... --peer ...`: the bootstrap puts
`code_root` (the directory holding the `targets` package) on sys.path, so the command works
from any working directory.

Which interpreter: `KvliteTarget(python=...)` if given, else `-O python=...` if set, else this
very interpreter when the node's data directory exists on this machine (the local runtime
creates it during setup), else "python3" (a container or SSH host; the node server needs only
the standard library, and remote runtimes put their code copy on PYTHONPATH).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

from chaos.errors import BadInput
from chaos.target import Addr, NodeConfig, OptionSpec

from .client import KvliteClient, call

_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from targets.kvlite.server import main; main(sys.argv[1:])")


class KvliteTarget:
    """The built-in leader-follower key-value target (DESIGN §6)."""

    name = "kvlite"
    workloads = frozenset({"register", "set"})
    supports_mesh = True
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
        "heartbeat_ms": OptionSpec(100, "leader heartbeat interval (ms)", None, int),
        "election_timeout_ms": OptionSpec(1000, "leader silence before failover (ms)", None, int),
        "fsync": OptionSpec("never", "fsync the log before acking (group commit)",
                            ("always", "never")),
        "snapshot_every": OptionSpec(10000, "compact the log after this many entries", None, int),
        "replication_lag_ms": OptionSpec(50, "asynchronous followers get log batches at most "
                                         "this often (0 = at once): the async replication lag",
                                         None, int),
        "python": OptionSpec("", "interpreter that runs nodes ('' = this one for local nodes, "
                             "python3 on remote ones)"),
        "timeout": OptionSpec(1.0, "client timeout per request (s); no answer -> info",
                              None, float),
    }

    def __init__(self, python: str | None = None, code_root: str | None = None):
        #: the interpreter that runs nodes; None = decide per node (see the module doc)
        self.python = python
        #: the directory holding the `targets` package, as seen by the node's host
        self.code_root = code_root or str(Path(__file__).resolve().parents[2])

    def validate_options(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """`-O key=value` strings -> typed options with defaults; BadInput names the problem."""
        opts: dict[str, Any] = {k: s.default for k, s in self.options.items()}
        for key, value in raw.items():
            spec = self.options.get(key)
            if spec is None:
                raise BadInput(f"-O {key}: unknown kvlite option; known: "
                               f"{', '.join(sorted(self.options))}")
            if spec.type is str and spec.choices is None:
                opts[key] = value
                continue
            if spec.choices is not None:
                if value not in spec.choices:
                    raise BadInput(f"-O {key}={value}: must be one of {', '.join(spec.choices)}")
                opts[key] = value
                continue
            try:
                v = spec.type(value)
            except (TypeError, ValueError):
                raise BadInput(f"-O {key}={value}: expected a {spec.type.__name__}") from None
            if not (v >= 0 if key == "replication_lag_ms" else v > 0):
                raise BadInput(f"-O {key}={value}: must be "
                               f"{'>= 0' if key == 'replication_lag_ms' else '> 0'}")
            opts[key] = v
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
        python = self.python or o.get("python") or (
            sys.executable if os.path.isdir(node.data_dir) else "python3")
        argv = [python, "-c", _BOOT.format(root=self.code_root),
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
        for peer, addr in sorted(node.peers.items()):
            argv += ["--peer", f"{peer}={addr.host}:{addr.port}"]
        return argv

    def client(self, nodes: Mapping[str, Addr], options: Mapping[str, Any]) -> KvliteClient:
        return KvliteClient({n: (a.host, a.port) for n, a in nodes.items()},
                            timeout=float(options.get("timeout", 1.0)),
                            routing=str(options.get("routing", "client")),
                            read_from=str(options.get("read_from", "leader")))

    def status(self, node: str, addr: Addr, timeout: float) -> dict[str, Any]:
        """The node's status dict; raises OSError (or ValueError) when it does not answer."""
        reply = call(addr, {"op": "status"}, timeout)
        if reply.get("type") != "ok":
            raise ConnectionError(f"{node}: status failed: {reply.get('error')}")
        # the recent-events list stays out: the monitor records every status it gets
        return {k: v for k, v in reply["value"].items() if k != "events"}
