"""The monitor: polls every node's status out of band and records each observation.

It talks to each node at its real address (never through the fault proxies), so a partition
does not hide what a node believes. Each poll is one op of process "monitor", f "status":
an invoke, then `ok` with the node's answer ({"role", "term", "leader", ...}) or `info` when the
node did not answer (paused, dead, overloaded). Nodes are polled one after the other on one
thread so the monitor's invoke/completion pairs never interleave; a slow node costs at most
`timeout` per round. The latest answers also tell the nemesis who the leader is.

Every answer is held to the status contract (chaos.target.check_status): an answer with a bad
role, term or leader is recorded as an `info` op whose error names the key and the value
("bad status: ..."), never silently skipped or half-used, and it does not count as a leader
claim. Terms may be of any orderable kind (int, str, list of ints) or None.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from chaos.target import Addr, Endpoints, StatusError, Target, check_status, term_key


class Monitor:
    def __init__(self, target: Target, nodes: Endpoints | Mapping[str, Addr], source: Any, *,
                 interval: float = 0.1, timeout: float = 0.25) -> None:
        """`nodes`: the nodes' real endpoints (a plain node -> main Addr mapping is accepted);
        `source` is a recorder source with `.record(op) -> op` (chaos.recorder)."""
        self.target = target
        self.endpoints = nodes if isinstance(nodes, Endpoints) else Endpoints.main_only(nodes)
        self.nodes = dict(self.endpoints)
        self.source = source
        self.interval = interval
        self.timeout = timeout
        self.latest: dict[str, dict[str, Any] | None] = {n: None for n in self.nodes}
        #: every node seen claiming leadership, the most recent claim first
        self.led: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        for node in self.nodes:
            if self._stop.is_set():
                return
            self.source.record({"process": "monitor", "type": "invoke", "f": "status",
                                "node": node, "value": None})
            try:
                status = check_status(node, self.target.status(node, self.endpoints,
                                                               self.timeout))
            except StatusError as exc:  # a contract error: recorded, named, never a claim
                self.latest[node] = None
                self.source.record({"process": "monitor", "type": "info", "f": "status",
                                    "node": node, "value": None,
                                    "error": f"bad status: {exc}"[:300]})
                continue
            except Exception as exc:  # noqa: BLE001 - no answer is an observation too
                self.latest[node] = None
                self.source.record({"process": "monitor", "type": "info", "f": "status",
                                    "node": node, "value": None,
                                    "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            self.latest[node] = status
            if status["role"] == "leader":
                self.led = [node] + [n for n in self.led if n != node]
            self.source.record({"process": "monitor", "type": "ok", "f": "status",
                                "node": node, "value": status})

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="chaos-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 + self.timeout * len(self.nodes))

    def leader(self) -> str | None:
        """The node currently claiming leadership with the highest term (None if none).

        Terms compare with chaos.target.term_key (any orderable kind); between equal terms
        the first node in order wins, so the answer is stable.
        """
        best: tuple[Any, str] | None = None
        for node, st in self.latest.items():
            if st and st.get("role") == "leader":
                key = term_key(st.get("term"))
                if best is None or key > best[0]:
                    best = (key, node)
        return best[1] if best else None

    def leaders(self) -> list[str]:
        return [n for n, st in self.latest.items() if st and st.get("role") == "leader"]

    def past_leaders(self) -> list[str]:
        """Every node seen leading during the run, the most recent first (the current
        leader, when there is one, before the others)."""
        now = self.leader()
        return ([now] if now else []) + [n for n in self.led if n != now]
