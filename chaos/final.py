"""The final ops (the set workload's final reads): run after the load, one thread per node.

A workload that rotates keys (workloads/set.py) has one final read per key per node: thousands
of them after an hour. So the ops routed to one node run in that node's own thread with its
own client (the nodes are read side by side), and their time stays bounded:

- an op that does not come back ok is retried (up to TRIES; a new process id after info),
  since a missing final read weakens the lost-writes check;
- once SKIP_AFTER ops in a row of one node got no ok answer, that node's remaining ops are not
  sent: each is recorded as an invoke and a `fail` ("not sent: ...": it surely did not
  happen), so the history says exactly which final reads are missing and the evidence rules
  (chaos.checkers.evidence) make the verdict unknown naming the node, instead of the run
  spending op_timeout * TRIES on each of the node's thousands of keys.

Every op attempt gets a fresh process id above every id used so far.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from chaos.completion import completion_of
from chaos.recorder import Recorder

TRIES = 3
SKIP_AFTER = 3


def _close(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - a client that cannot close is gone anyway
        pass


def call_with_timeout(client: Any, op: Mapping[str, Any], timeout: float
                      ) -> tuple[Any, BaseException | None]:
    """client.invoke(op) on a helper thread, given up after `timeout` (TimeoutError)."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["result"] = client.invoke(op)
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=call, name="chaos-final-op", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None, TimeoutError(f"no answer within {timeout:g} s")
    return box.get("result"), box.get("error")


class FinalRunner:
    """Runs a list of final ops (see the module docstring); `run` returns their completions
    in the order of the ops, without their values unless `keep_values` (the history has them;
    120,000 final reads of 256 elements each would hold a gigabyte here)."""

    def __init__(self, new_client: Callable[[], Any], recorder: Recorder, op_timeout: float,
                 progress: Callable[[int, int], None] | None = None, keep_values: bool = True):
        self.new_client = new_client
        self.keep_values = keep_values
        self.recorder = recorder
        self.op_timeout = op_timeout
        self.progress = progress
        self.source = recorder.local("final")
        self._lock = threading.Lock()
        self._next_id = -1
        self._done = 0

    def _process(self) -> int:
        with self._lock:
            self._next_id = max(self._next_id, self.recorder.max_process) + 1
            return self._next_id

    def run(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups: dict[Any, list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault(op.get("node"), []).append(i)
        results: list[dict[str, Any] | None] = [None] * len(ops)
        threads = [threading.Thread(target=self._run_node, args=(ops, idx, results),
                                    name=f"chaos-final-{node}", daemon=True)
                   for node, idx in groups.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r for r in results if r is not None]

    def _run_node(self, ops: list[dict[str, Any]], idx: list[int],
                  results: list[dict[str, Any] | None]) -> None:
        client: Any = None
        misses = 0
        last: dict[str, Any] | None = None
        try:
            for i in idx:
                if misses >= SKIP_AFTER and last is not None:
                    results[i] = self._not_sent(ops[i], last)
                else:
                    done, client = self._one(ops[i], client)
                    ok = done["type"] == "ok"
                    misses = 0 if ok else misses + 1
                    last = None if ok else done
                    results[i] = done if self.keep_values else {
                        k: v for k, v in done.items() if k != "value"}
                self._tick(len(ops))
        finally:
            if client is not None:
                _close(client)

    def _tick(self, total: int) -> None:
        if self.progress is not None:
            with self._lock:
                self._done += 1
                done = self._done
            self.progress(done, total)

    def _one(self, fields: dict[str, Any], client: Any) -> tuple[dict[str, Any], Any]:
        """One final op with its retries; returns its last completion and the client."""
        process = self._process()
        done: dict[str, Any] = {}
        for _attempt in range(TRIES):
            invoke = {"process": process, "type": "invoke", **fields}
            self.source.record(invoke)
            result: Any = None
            error: BaseException | None = None
            if client is None:
                try:
                    client = self.new_client()
                except Exception as exc:  # noqa: BLE001 - the op did not happen
                    error = exc
            if client is not None:
                result, error = call_with_timeout(client, invoke, self.op_timeout)
            done = completion_of(invoke, result, error)
            if isinstance(error, TimeoutError):
                done["error"] = f"indeterminate: timeout after {self.op_timeout:g} s"
            self.source.record(done)
            if done["type"] == "ok":
                break
            if done["type"] == "info":
                if client is not None:
                    _close(client)
                client = None
                process = self._process()
        return done, client

    def _not_sent(self, fields: dict[str, Any], last: Mapping[str, Any]) -> dict[str, Any]:
        """Record `fields` as an op that was not sent (a `fail`: it surely did not happen)."""
        invoke = {"process": self._process(), "type": "invoke", **fields}
        self.source.record(invoke)
        node = fields.get("node")
        why = (f"not sent: {node or 'the node'} answered none of its last {SKIP_AFTER} final "
               f"ops (last: {last.get('type')} {str(last.get('error') or '')[:80]!r})")
        done = completion_of(invoke, {"type": "fail", "error": why}, None)
        self.source.record(done)
        return done
