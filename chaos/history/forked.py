"""Run a few calls at once on forked processes and collect their results in order.

The bounded-memory analysis spreads two kinds of work over the cores: reading byte ranges of
a history (chaos.history.ranges) and checking its shards (chaos.checkers.shard_pool). Both
want the same thing: the parent runs the first call itself (its memory is already there),
each other call runs in a child forked from it (so it sees the parent's state without
pickling it: the split, the hash secret that placed keys in shards), and each child sends
back one picklable result through a pipe. An exception in a child is raised in the parent;
a child that dies (killed, out of memory) is a RuntimeError naming its exit code.

A child dies with its parent (PR_SET_PDEATHSIG): a SIGKILLed analysis leaves no child
writing into a spill directory the next analysis sweeps (chaos.history.spill). Without
fork (not Linux) every call runs in the parent, one after the other (`can_fork`).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

Call = tuple[Callable[..., Any], tuple[Any, ...]]


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies; elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(conn: Connection, call: Call, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        fn, args = call
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(repr(exc))))
    finally:
        conn.close()


def map_forked(calls: Sequence[Call]) -> list[Any]:
    """The results of `calls`, in order: the first run here, the others in forked children
    at the same time (all here, in turn, where there is no fork)."""
    if not calls:
        return []
    if len(calls) == 1 or not can_fork():
        return [fn(*args) for fn, args in calls]
    ctx = multiprocessing.get_context("fork")
    procs: list[tuple[Any, Connection]] = []
    try:
        for call in calls[1:]:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, daemon=True, args=(send, call, os.getpid()))
            proc.start()
            send.close()
            procs.append((proc, recv))
        fn, args = calls[0]
        out = [fn(*args)]
        for proc, recv in procs:
            try:
                status, got = recv.recv()
            except EOFError:
                proc.join(5)
                raise RuntimeError("an analysis process died (exit code "
                                   f"{proc.exitcode})") from None
            if status != "ok":
                raise got
            out.append(got)
    finally:
        for proc, recv in procs:
            recv.close()
            if proc.is_alive():
                proc.kill()
            proc.join()
    return out
