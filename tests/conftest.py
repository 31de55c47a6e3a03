"""Shared test configuration: markers, the Docker-engine gate, and `wait_for`.

Tests marked `docker` run whenever a Docker engine answers (as in CI) and are skipped, with
the reason, when none does. `slow` tests are excluded by default (pyproject addopts).

`integration` marks every test that starts processes (servers, `chaos` subprocesses, worker
processes, containers), so `pytest -m quick` (= not slow, not integration, not docker) runs
the logic alone in well under a minute. A test is integration when its module or the test says
so (`pytestmark = pytest.mark.integration`), when it is marked `docker`, when it uses a fixture
in PROCESS_FIXTURES, or when PROCESS_TESTS lists it. A test left unmarked that starts a
process anyway gets an `UnmarkedProcessWarning` naming what it started.
"""
from __future__ import annotations

import functools
import multiprocessing.process
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

# A suite started in the background by a non-interactive shell (`cmd &`, nohup) inherits SIGINT
# ignored, and exec keeps it ignored in every child: the Ctrl-C tests would send a signal nobody
# receives and time out. With a handler here, each exec'd child starts with SIGINT at its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
HISTORIES = REPO / "histories"
SHARED = REPO.parent / "shared"


@functools.cache
def docker_available() -> str | None:
    """None when a Docker engine answers, else the reason it does not."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"no Docker engine: {exc}"


T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Poll `cond` until it returns something truthy and return that; AssertionError naming
    `what` (and the last value or exception) after `timeout` seconds.

    Tests wait for the condition they need instead of sleeping for a guessed time: a sleep is
    either too short on a loaded machine (a flaky test) or too long everywhere else.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = cond()
        except Exception as exc:  # noqa: BLE001 - not there yet (refused, missing file, ...)
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                 f"(last: {last!r})")
        time.sleep(interval)


#: fixtures that start processes: a test using one is integration
PROCESS_FIXTURES = frozenset({"kvlite_cluster"})

#: module -> tests (function names; "*" = all) that start processes but whose module does not
#: say so itself yet; the module's owner may move the mark into the module and drop the entry
PROCESS_TESTS: dict[str, frozenset[str]] = {
    "test_etcd_run": frozenset({"*"}),
    "test_postgres_run": frozenset({"*"}),
    "test_redis_run": frozenset({"*"}),
    "test_kvlite_protocol": frozenset({
        "test_bad_requests_get_an_error_and_the_node_keeps_serving",
        "test_pipelined_requests_on_one_connection", "test_client_follows_the_leader_hint",
        "test_plugin_start_command_runs_a_node_from_any_directory",
        "test_server_rejects_bad_arguments", "test_client_spreads_reads_when_reading_from_any_node",
        "test_a_read_naming_a_node_reads_that_nodes_own_state"}),
    "test_images": frozenset({"test_a_file_target_declares_its_own_packages",
                              "test_engine_not_reachable_is_exit_3_one_line"}),
    "test_proxy_client": frozenset({"test_connect_or_start_starts_embedded_and_close_stops_it",
                                    "test_standalone_server_serves_and_stops_on_sigterm",
                                    "test_serve_on_busy_port_exits_3"}),
    "test_report": frozenset({"test_cli_subprocess_end_to_end"}),
    "test_evidence": frozenset({"test_scan_proc_sees_a_direct_connection_between_node_processes"}),
}


def _starts_processes(item: pytest.Item) -> bool:
    if "docker" in item.keywords or "integration" in item.keywords:
        return True
    if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    listed = PROCESS_TESTS.get(item.path.stem, frozenset())
    return "*" in listed or getattr(item, "originalname", item.name) in listed


@pytest.hookimpl(tryfirst=True)  # before -m selects: the marks added here must count
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _starts_processes(item):
            item.add_marker(pytest.mark.integration)
        elif "slow" not in item.keywords:
            item.add_marker(pytest.mark.quick)
        if "docker" in item.keywords:
            reason = docker_available()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


class UnmarkedProcessWarning(pytest.PytestWarning):
    """A test that is not marked integration started a process."""


_running: dict[str, Any] = {"item": None, "started": []}


def _note(what: str) -> None:
    if _running["item"] is not None:
        _running["started"].append(what)


_popen_init = subprocess.Popen.__init__
_process_start = multiprocessing.process.BaseProcess.start


def _watched_popen_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    argv = args[0] if args else kwargs.get("args")
    _note(f"subprocess {str(argv)[:80]}")
    _popen_init(self, *args, **kwargs)


def _watched_process_start(self):  # type: ignore[no-untyped-def]
    _note(f"multiprocessing {self.name}")
    _process_start(self)


# once, also when a test imports this module again as `tests.conftest` (for wait_for)
if not getattr(_popen_init, "chaos_watch", False):
    _watched_popen_init.chaos_watch = True  # type: ignore[attr-defined]
    _watched_process_start.chaos_watch = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = _watched_popen_init  # type: ignore[method-assign]
    multiprocessing.process.BaseProcess.start = _watched_process_start  # type: ignore[method-assign]

#: processes a quick test may start: one-shot tools, not systems under test
ALLOWED_TOOLS = ("chattr", "lsattr", "ruff", "mypy")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    watch = "integration" not in item.keywords
    _running["item"], _running["started"] = (item if watch else None), []
    try:
        yield
    finally:
        started = [s for s in _running["started"]
                   if not any(f"'{tool}'" in s for tool in ALLOWED_TOOLS)]
        _running["item"] = None
        if started:
            item.warn(UnmarkedProcessWarning(
                f"started {len(started)} process(es) without the integration mark "
                f"(first: {started[0]}): mark the test or its module integration"))


@pytest.fixture
def kvlite_cluster(tmp_path):
    """A factory of real kvlite clusters (processes on free ports); all closed at the end."""
    from targets.kvlite.testing import Cluster

    made: list[Cluster] = []

    def make(**kw):
        c = Cluster(tmp_path / f"c{len(made)}", **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def server():
    """The embedded Toxiproxy-compatible server on a free port, one per test module (the proxy
    and mesh suites); a module that needs another server (seeded, say) defines its own."""
    from chaos.net.proxy import ServerThread

    srv = ServerThread(port=0).start()
    yield srv
    srv.stop()
