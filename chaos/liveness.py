"""Liveness during the load phase: notice a dead cluster and end the load early.

A test whose every node is gone goes on "injecting" faults into nothing, and its history says
little; worse, its checkers may find nothing wrong in it. So the controller ticks a `Liveness`
watcher from its wait loop (chaos.run) and the watcher raises `ClusterDown` when

- every node is down per the runtime (`is_running` false, or the runtime cannot even tell:
  a removed container) and the nemesis will not bring them all back (`nemesis.killed` lists
  the nodes a kill fault took down and will restart; a node down and not in it died on its
  own or was killed from outside), or
- no node has answered the monitor for longer than `dead_after_s` (default: the evidence
  rule's 5 s, chaos.checkers.evidence.Thresholds) and not every node is killed or paused by
  the nemesis (hung or frozen processes that still "run").

The runtime is asked only when the monitor's latest poll got no answer from any node, so a
healthy run costs nothing but a look at the monitor's latest answers. On the way out the
watcher records one op of process "controller", f "cluster-down" in the history, whose value
says what died and when; the evidence rules read it and make the verdict "unknown" with that
sentence as its first reason (exit 2: the history up to the death is still checked, and an
anomaly found in it still makes the run invalid; docs/verdicts.md says why not exit 3).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from chaos.checkers.evidence import CLUSTER_DOWN, CONTROLLER, Thresholds

NS_PER_S = 1_000_000_000


class ClusterDown(Exception):
    """Every node is down and nothing will restart it: the load phase should end now."""


class Liveness:
    """The watcher chaos.run ticks during the load phase (see the module doc)."""

    def __init__(self, runtime: Any, nodes: Sequence[str], monitor: Any, nemesis: Any,
                 recorder: Any, *, dead_after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`monitor` has `.latest` (node -> last status or None); `nemesis` has `.killed`
        (and `.paused`); `recorder` has `.now()` (ns since the test start) and `.local()`."""
        self.runtime = runtime
        self.nodes = list(nodes)
        self.monitor = monitor
        self.nemesis = nemesis
        self.recorder = recorder
        self.dead_after_s = (Thresholds().dead_after_s if dead_after_s is None
                             else float(dead_after_s))
        self.clock = clock
        self.last_answer = clock()          # when some node last answered the monitor
        self.last_answer_ns = recorder.now()
        self.down_since: dict[str, int] = {}  # node -> first time (ns) seen down
        self.message: str | None = None

    # -- what the nemesis will undo ----------------------------------------------------------
    def _set(self, name: str) -> set[str]:
        return set(getattr(self.nemesis, name, None) or ())

    def _status(self, node: str) -> tuple[bool, str]:
        """(running, how it is known) from the runtime; an error counts as not running."""
        try:
            return bool(self.runtime.is_running(node)), "not running"
        except Exception as exc:  # noqa: BLE001 - a removed container cannot even be asked
            return False, f"gone (the runtime cannot reach it: {type(exc).__name__}: " \
                          f"{' '.join(str(exc).split())[:60]})"

    # -- the tick ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Look once; raise ClusterDown (after recording it) when the cluster is dead."""
        if self.message is not None:
            raise ClusterDown(self.message)
        latest: Mapping[str, Any] = getattr(self.monitor, "latest", {}) or {}
        now, now_ns = self.clock(), self.recorder.now()
        if any(latest.get(n) is not None for n in self.nodes):
            self.last_answer, self.last_answer_ns = now, now_ns
            self.down_since.clear()
            return
        # a node a membership fault removed is down until the fault adds it back
        killed, paused = self._set("killed") | self._set("removed"), self._set("paused")
        states = {n: self._status(n) for n in self.nodes}
        down = {n: how for n, (running, how) in states.items() if not running}
        for n in list(self.down_since):
            if n not in down:
                del self.down_since[n]
        for n in down:
            self.down_since.setdefault(n, now_ns)
        if len(down) == len(self.nodes) and not set(self.nodes) <= killed:
            self._die(self._runtime_message(down, killed, now_ns))
        silent = now - self.last_answer
        if silent > self.dead_after_s and not set(self.nodes) <= (killed | paused):
            self._die(f"the cluster stopped answering: no node answered the monitor for "
                      f"{silent:.1f} s (since {self.last_answer_ns / NS_PER_S:.3f} s; limit "
                      f"{self.dead_after_s:g} s) and the nemesis is not holding them all down"
                      f"{self._load_end(now_ns)}")

    def _runtime_message(self, down: Mapping[str, str], killed: set[str], now_ns: int) -> str:
        ours = sorted(n for n in down if n in killed)
        theirs = sorted(n for n in down if n not in killed)
        since = min(self.down_since[n] for n in theirs)
        kinds = {down[n].split(" (")[0] for n in theirs}
        how = " / ".join(sorted(kinds))
        detail = next((down[n][down[n].index("("):] for n in theirs if "(" in down[n]), "")
        text = (f"every node is down: {', '.join(theirs)} {how}{' ' + detail if detail else ''} "
                f"since "
                f"{since / NS_PER_S:.3f} s (last monitor answer at "
                f"{self.last_answer_ns / NS_PER_S:.3f} s), not killed by the nemesis (nothing "
                f"will restart them)")
        if ours:
            text += f"; {', '.join(ours)} killed by the nemesis"
        return text + self._load_end(now_ns)

    @staticmethod
    def _load_end(now_ns: int) -> str:
        return f"; the load phase ended early at {now_ns / NS_PER_S:.3f} s"

    def _die(self, message: str) -> None:
        """Record the cluster-down op, remember why, raise ClusterDown."""
        self.message = message
        source = self.recorder.local(CONTROLLER)
        value = {"message": message,
                 "down": {n: self.down_since.get(n) for n in self.nodes},
                 "last_answer": self.last_answer_ns}
        source.record({"process": CONTROLLER, "type": "invoke", "f": CLUSTER_DOWN,
                       "value": None})
        source.record({"process": CONTROLLER, "type": "ok", "f": CLUSTER_DOWN, "value": value})
        raise ClusterDown(message)
