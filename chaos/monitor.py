"""The monitor: polls every node's status out of band and records each observation.

It talks to each node at its real address (never through the fault proxies), so a partition
does not hide what a node believes. Each poll is one op of process "monitor", f "status":
an invoke, then `ok` with the node's answer ({"role", "term", "leader", ...}) or `info` when the
node did not answer (paused, dead, overloaded). Nodes are polled one after the other on one
thread so the monitor's invoke/completion pairs never interleave; a slow node costs at most
`timeout` per round. The latest answers also tell the nemesis who the leader is.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

from chaos.target import Addr, Target


class Monitor:
    def __init__(self, target: Target, nodes: Mapping[str, Addr], source: Any, *,
                 interval: float = 0.1, timeout: float = 0.25) -> None:
        """`source` is a recorder source with `.record(op) -> op` (chaos.recorder)."""
        self.target = target
        self.nodes = dict(nodes)
        self.source = source
        self.interval = interval
        self.timeout = timeout
        self.latest: dict[str, dict[str, Any] | None] = {n: None for n in self.nodes}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        for node, addr in self.nodes.items():
            if self._stop.is_set():
                return
            self.source.record({"process": "monitor", "type": "invoke", "f": "status",
                                "node": node, "value": None})
            try:
                status = dict(self.target.status(node, addr, self.timeout))
            except Exception as exc:  # noqa: BLE001 - no answer is an observation too
                self.latest[node] = None
                self.source.record({"process": "monitor", "type": "info", "f": "status",
                                    "node": node, "value": None,
                                    "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            self.latest[node] = status
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
        """The node currently claiming leadership with the highest term (None if none)."""
        best: tuple[int, str] | None = None
        for node, st in self.latest.items():
            if st and st.get("role") == "leader":
                term = st.get("term")
                key = (term if isinstance(term, int) else -1, node)
                if best is None or key[0] > best[0]:
                    best = key
        return best[1] if best else None

    def leaders(self) -> list[str]:
        return [n for n, st in self.latest.items() if st and st.get("role") == "leader"]
