"""The workload runner: concurrent clients in several worker processes, recorded op by op.

Jepsen's interpreter, with processes: `concurrency` logical client processes are spread over
`workers` OS processes (multiprocessing, "spawn": no inherited locks or sockets), each logical
process a thread with its own target client. A logical process issues one op at a time: the
invoke is recorded BEFORE the call and the completion after it. An exception, or no answer
within `op_timeout`, completes the op as `info` ("indeterminate: ...": it may still happen);
that process id is then retired and the next one, `id + concurrency`, continues in its place,
with a new client. Ids are therefore unique across workers and the whole run.

Every op goes through a `chaos.recorder.RemoteSink` to the parent's `Recorder`, which writes
one time-ordered history. Workers ignore SIGINT (the parent owns Ctrl-C and stops them), stop
on the parent's "stop" message or SIGTERM (flushing their ops), and exit by themselves when the
parent dies (control pipe EOF, or the parent pid changes).

Workers get the target either by reference (`target_ref`, as chaos.plugins resolves it, loaded
again in the worker) or, without one, as the pickled target object.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import pickle
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from chaos.completion import completion_of
from chaos.errors import BadInput, SetupError
from chaos.recorder import MAX_BACKLOG, Recorder, RemoteSink
from chaos.target import Addr, Endpoints

#: how often each worker looks for ops over their timeout
WATCHDOG_INTERVAL = 0.02


@dataclass
class WorkerSpec:
    """Everything a worker process needs; pickled once per worker at start."""

    worker_id: int
    slots: list[int]                  # logical process slots (= their first process ids)
    concurrency: int
    target: Any                       # the target object, or None when target_ref is used
    target_ref: str | None
    client_addrs: Endpoints           # every named port of every node (not only MAIN)
    #: client placement: slot i's clients use placed[i % len(placed)] (None: client_addrs)
    placed: list[Any] | None
    target_options: dict[str, Any]
    workload: Any
    lane_interval: float | None       # seconds between one logical process's invokes
    seed: int
    op_timeout: float
    t0_ns: int
    parent_pid: int


def _timeout_completion(invoke: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    op = completion_of(invoke, None, TimeoutError(f"no answer within {timeout:g} s"))
    op["error"] = f"indeterminate: timeout after {timeout:g} s"
    return op


class _Lane:
    """One logical process: its id, and the op it has in flight (guarded by the sink lock)."""

    def __init__(self, slot: int, process: int):
        self.slot = slot
        self.process = process
        self.inflight: tuple[dict[str, Any], float] | None = None  # (invoke, monotonic start)
        self.abandoned = False
        self.thread: threading.Thread | None = None


class _Worker:
    """The threads of one worker process: one per logical process, plus a timeout watchdog."""

    def __init__(self, spec: WorkerSpec, sink: RemoteSink, target: Any):
        self.spec = spec
        self.sink = sink
        self.target = target
        self.stop = threading.Event()
        self.lanes: list[_Lane] = []

    def start(self) -> None:
        for slot in self.spec.slots:
            self._start_lane(_Lane(slot, slot))
        threading.Thread(target=self._watchdog, name="chaos-watchdog", daemon=True).start()

    def _start_lane(self, lane: _Lane) -> None:
        lane.thread = threading.Thread(target=self._lane_loop, args=(lane,), daemon=True,
                                       name=f"chaos-process-{lane.process}")
        self.lanes.append(lane)
        lane.thread.start()

    def _new_client(self, slot: int = 0) -> Any:
        placed = self.spec.placed
        addrs = placed[slot % len(placed)] if placed else self.spec.client_addrs
        while not self.stop.is_set():
            try:
                return self.target.client(addrs, self.spec.target_options)
            except Exception as exc:  # noqa: BLE001 - keep trying; the node may be down
                self.sink.error(f"client: {type(exc).__name__}: {exc}")
                self.stop.wait(0.2)
        return None

    @staticmethod
    def _close(client: Any) -> None:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - a client that cannot close is gone anyway
            pass

    def _lane_loop(self, lane: _Lane) -> None:
        spec, sink = self.spec, self.sink
        client = self._new_client(lane.slot)
        rng = random.Random(f"{spec.seed}:{lane.process}")
        pace = random.Random(f"{spec.seed}:pace:{lane.process}")
        next_at = time.monotonic() + (pace.random() * spec.lane_interval
                                      if spec.lane_interval else 0.0)
        while client is not None and not self.stop.is_set():
            while sink.backlog() > MAX_BACKLOG and not self.stop.is_set():
                self.stop.wait(0.002)  # the recorder is behind: slow down, don't buffer
            if spec.lane_interval:
                delay = next_at - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    break
                # uniform jitter around the mean interval keeps the total rate but no lockstep
                next_at = max(next_at, time.monotonic() - spec.lane_interval) + \
                    spec.lane_interval * (0.5 + pace.random())
            try:
                fields = dict(spec.workload.generator(rng, lane.process, spec.concurrency))
            except Exception as exc:  # noqa: BLE001 - a workload bug: report, stop this lane
                sink.error(f"workload generator: {type(exc).__name__}: {exc}")
                break
            invoke = {"process": lane.process, "type": "invoke", **fields}
            with sink.lock:
                stamped = sink.record_locked(invoke)
                lane.inflight = (stamped, time.monotonic())
            result, error = None, None
            try:
                result = client.invoke(invoke)
            except Exception as exc:  # noqa: BLE001 - every exception is an indeterminate op
                error = exc
            done = completion_of(invoke, result, error)
            with sink.lock:
                if lane.inflight is None:  # the watchdog timed it out and replaced this lane
                    abandoned = True
                else:
                    abandoned = False
                    lane.inflight = None
                    sink.record_locked(done)
            if abandoned:
                break
            if done["type"] == "info":  # retire the process id; continue as a new one
                self._close(client)
                lane.process += spec.concurrency
                rng = random.Random(f"{spec.seed}:{lane.process}")
                client = self._new_client(lane.slot)
        if client is not None:
            self._close(client)

    def _watchdog(self) -> None:
        """Complete ops over `op_timeout` as info, and give their slot a fresh process."""
        timeout = self.spec.op_timeout
        while True:
            time.sleep(WATCHDOG_INTERVAL)
            now = time.monotonic()
            replace: list[_Lane] = []
            with self.sink.lock:
                for lane in self.lanes:
                    if lane.inflight is not None and now - lane.inflight[1] > timeout:
                        self.sink.record_locked(_timeout_completion(lane.inflight[0], timeout))
                        lane.inflight = None
                        lane.abandoned = True
                        replace.append(lane)
                self.lanes = [ln for ln in self.lanes if not ln.abandoned]
            for old in replace:
                if not self.stop.is_set():
                    self._start_lane(_Lane(old.slot, old.process + self.spec.concurrency))

    def busy(self) -> bool:
        """True while some lane still has a thread that may record an op."""
        with self.sink.lock:
            return any(ln.thread is not None and ln.thread.is_alive() for ln in self.lanes)


def _load_target(spec: WorkerSpec) -> Any:
    if spec.target_ref is not None:
        from chaos.plugins import load_target
        return load_target(spec.target_ref)
    return spec.target


def _worker_main(spec: WorkerSpec, data_conn: Any, ctl_conn: Any) -> None:
    """Entry point of a worker process (module-level so "spawn" can find it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    terminated = threading.Event()
    # SIGTERM (say, to the whole process group) is a stop request: finish, flush, say bye.
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    sink = RemoteSink(data_conn, spec.t0_ns)
    sink.start()
    try:
        worker = _Worker(spec, sink, _load_target(spec))
        worker.start()
    except BaseException as exc:  # noqa: BLE001 - tell the parent why, in one line
        sink.close(fatal=f"worker {spec.worker_id}: {type(exc).__name__}: {exc}")
        os._exit(1)
    parent_gone = False
    while True:
        if terminated.is_set():
            break
        try:
            if ctl_conn.poll(0.1):
                ctl_conn.recv()  # "stop" is the only message
                break
        except (EOFError, OSError):
            parent_gone = True
            break
        if os.getppid() != spec.parent_pid or sink.broken:
            parent_gone = True
            break
    worker.stop.set()
    if not parent_gone:
        # In-flight ops finish, or the watchdog times them out: bounded by op_timeout.
        deadline = time.monotonic() + spec.op_timeout + 1.0
        while worker.busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        sink.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # lanes stuck in a blocking call must not keep the process alive


class WorkloadRunner:
    """Drives `workload` against the target from worker processes, into `recorder`.

    concurrency: logical client processes in total (>= 1)
    rate:        total invokes per second over all clients; None = as fast as possible
    workers:     OS processes (default min(4, cpu count), never more than concurrency)
    op_timeout:  seconds before an op without answer is recorded as info and abandoned
    target_ref:  how workers load the target (chaos.plugins.resolve_ref); None = pickle it
    placed:      client placement (Jepsen's): one client endpoints per node; logical process
                 slot i reaches the nodes through placed[i % len(placed)], i.e. as node
                 i % n does during a partition. None: every client uses `client_addrs`
    """

    def __init__(self, target: Any, client_addrs: Mapping[str, Addr],
                 target_options: Mapping[str, Any], workload: Any, recorder: Recorder, *,
                 concurrency: int, rate: float | None, seed: int, workers: int | None = None,
                 op_timeout: float = 5.0, target_ref: str | None = None,
                 placed: list[Any] | None = None):
        if not isinstance(concurrency, int) or concurrency < 1:
            raise BadInput(f"--concurrency must be >= 1, got {concurrency}")
        if rate is not None and not rate > 0:
            raise BadInput(f"--rate must be > 0, got {rate}")
        if not op_timeout > 0:
            raise BadInput(f"op timeout must be > 0, got {op_timeout}")
        self.target = target
        # kept as Endpoints: dict() would keep only the MAIN ports (Endpoints is a Mapping
        # node -> MAIN address), and a client may need the others (Sentinel, a gateway)
        self.client_addrs = (client_addrs if isinstance(client_addrs, Endpoints)
                             else Endpoints.main_only(client_addrs))
        self.target_options = dict(target_options)
        self.workload = workload
        self.recorder = recorder
        self.concurrency = concurrency
        self.rate = rate
        self.seed = seed
        self.workers = max(1, min(workers or min(4, os.cpu_count() or 1), concurrency))
        self.op_timeout = op_timeout
        self.target_ref = target_ref
        self.placed = list(placed) if placed else None
        self._procs: list[tuple[str, Any, Any]] = []  # (source name, Process, ctl conn)
        self._started = False
        self._stopped = False

    # -- start -------------------------------------------------------------------------------
    def _spec(self, worker_id: int) -> WorkerSpec:
        return WorkerSpec(
            worker_id=worker_id,
            slots=[s for s in range(self.concurrency) if s % self.workers == worker_id],
            concurrency=self.concurrency,
            target=None if self.target_ref is not None else self.target,
            target_ref=self.target_ref, client_addrs=self.client_addrs, placed=self.placed,
            target_options=self.target_options, workload=self.workload,
            lane_interval=self.concurrency / self.rate if self.rate else None,
            seed=self.seed, op_timeout=self.op_timeout, t0_ns=self.recorder.t0_ns,
            parent_pid=os.getpid())

    def start(self, timeout: float = 30.0) -> None:
        """Start the workers and wait until each one runs its clients (SetupError if not)."""
        if self._started:
            raise RuntimeError("WorkloadRunner.start called twice")
        self._started = True
        specs = [self._spec(w) for w in range(self.workers)]
        try:
            pickle.dumps(specs[0])
        except Exception as exc:  # noqa: BLE001
            raise SetupError(f"workload runner: the target or workload cannot be sent to worker "
                             f"processes ({type(exc).__name__}: {exc}); pass target_ref") from exc
        ctx = mp.get_context("spawn")
        try:
            for spec in specs:
                name = f"worker-{spec.worker_id}"
                data_r, data_w = ctx.Pipe(duplex=False)
                ctl_r, ctl_w = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker_main, args=(spec, data_w, ctl_r),
                                   name=f"chaos-{name}", daemon=True)
                self.recorder.add_remote(name, data_r, alive=functools.partial(_is_alive, proc))
                # Block SIGINT while forking so the child starts with it blocked: a Ctrl-C
                # during its interpreter start-up then cannot print a traceback.
                old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    proc.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
                data_w.close()
                ctl_r.close()
                self._procs.append((name, proc, ctl_w))
            self._wait_ready(timeout)
        except BaseException:
            self.stop(timeout=2.0)
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [name for name, _, _ in self._procs]
        while pending:
            for name in list(pending):
                live, hello, fatal = self.recorder.source_state(name)
                if fatal:
                    raise SetupError(f"workload {fatal}")
                if hello and live:
                    pending.remove(name)
                elif not live:
                    raise SetupError(f"workload {name} exited during start-up (see its stderr)")
            if pending and time.monotonic() > deadline:
                raise SetupError(f"workload workers {', '.join(pending)} did not start "
                                 f"within {timeout:g} s")
            time.sleep(0.01)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        """Stop generating, let in-flight ops finish or time out, join workers, drain their ops.

        Idempotent. Workers that do not exit in `timeout` are terminated, then killed.
        """
        if self._stopped:
            return
        self._stopped = True
        for _, _, ctl in self._procs:
            try:
                ctl.send("stop")
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + timeout
        for _, proc, _ in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for _, proc, _ in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        self.recorder.wait_remotes([name for name, _, _ in self._procs], timeout=2.0)
        for _, _, ctl in self._procs:
            try:
                ctl.close()
            except OSError:
                pass

    def __enter__(self) -> "WorkloadRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def alive_workers(self) -> int:
        return sum(1 for _, proc, _ in self._procs if proc.pid is not None and _is_alive(proc))

    def stats(self) -> dict[str, Any]:
        """For the progress line: recorder counters plus live workers."""
        s = self.recorder.stats()
        return {"ok": s.ok, "fail": s.fail, "info": s.info, "written": s.written,
                "workers": self.alive_workers(), "last_error": s.last_error,
                "lost_workers": s.lost_sources}

    # -- final ops -----------------------------------------------------------------------------
    def run_final(self, nodes: list[str], quiesce_s: float, progress: Any = None,
                  keep_values: bool = True) -> list[dict[str, Any]]:
        """After `quiesce_s` s of quiet, run the workload's final ops from this process.

        The workload is given the nodes and the keys the run's ops used (the recorder's);
        chaos.final runs the ops, one thread per node (retries, a node that stopped answering
        skipped and recorded as such). `progress(done, total)` is called after each op.
        Returns the completions, in the order of the ops (without their values unless
        `keep_values`: the history holds them, and there may be a gigabyte of them).
        """
        ops = list(self.workload.final_ops(list(nodes), self.recorder.keys()))
        if not ops:
            return []
        if quiesce_s > 0:
            time.sleep(quiesce_s)
        from chaos.final import FinalRunner

        def new_client() -> Any:
            return self.target.client(self.client_addrs, self.target_options)

        return FinalRunner(new_client, self.recorder, self.op_timeout, progress,
                           keep_values).run(ops)


def _is_alive(proc: Any) -> bool:
    """Running, or not started yet (the recorder learns of a worker before its start)."""
    try:
        return proc.exitcode is None
    except ValueError:  # closed
        return False
