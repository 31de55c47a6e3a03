"""The pytest plugin (entry point `pytest11: chaos`): chaos tests in a project's own suite.

    def test_failover(chaos):
        r = chaos.run(target="kvlite", nemesis="partition", time_limit=20,
                      options={"replication": "quorum", "failover": "majority"})
        assert r.valid, r.summary()

The `chaos` fixture is chaos.api with the session's defaults filled in: `--chaos-store DIR`
(where runs are stored; default a `chaos-store` directory under pytest's basetemp, which
pytest keeps for the last three sessions) and `--chaos-seed N` (the seed of every run that does
not pass its own, to repeat a failing night). Every run a test makes is attached to its report:
a "chaos runs" section (verdict, run directory, seed) on failure, and a `chaos_run_dir` user
property on every test, which `pytest --junitxml` writes out for CI.

The plugin loads in every pytest session of an environment where chaos is installed, so it
does nothing unless a test asks for the fixture: no import of chaos's heavy parts, no files,
and only the `--chaos-*` options.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from chaos.api import Result

#: where a test item keeps the results of the runs its `chaos` fixture made
RUNS = pytest.StashKey[list["Result"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "chaos tests (the `chaos` fixture)")
    group.addoption("--chaos-store", metavar="DIR", default=None,
                    help="Store the chaos fixture's runs under DIR (default: chaos-store under "
                         "pytest's basetemp). Keep it as a CI artifact.")
    group.addoption("--chaos-seed", metavar="N", type=int, default=None,
                    help="Seed of every chaos run that does not set its own (default: random; "
                         "each run's seed is in its failure report).")


class ChaosFixture:
    """What the `chaos` fixture gives a test: chaos.api's run/analyze/load_history with the
    session's store and seed as defaults, remembering each result for the test's report."""

    def __init__(self, store: str, seed: int | None, runs: list[Result],
                 properties: list[tuple[str, object]]) -> None:
        self.store = store
        self.seed = seed
        self.runs = runs
        self._properties = properties  # the test item's user_properties (--junitxml)

    def _record(self, result: Result) -> Result:
        self.runs.append(result)
        self._properties.append(("chaos_run_dir", str(result.run_dir or result.path)))
        return result

    def run(self, **kwargs: Any) -> Result:
        """chaos.api.run(**kwargs) (the `chaos run` flags as keywords), stored in the
        session's store, with the session's seed unless `seed=` is given."""
        from chaos import api

        kwargs.setdefault("store", self.store)
        if kwargs.get("seed") is None and self.seed is not None:
            kwargs["seed"] = self.seed
        return self._record(api.run(**kwargs))

    def analyze(self, path: str | Path, **kwargs: Any) -> Result:
        """chaos.api.analyze(path, **kwargs): check a stored or imported history."""
        from chaos import api

        return self._record(api.analyze(path, **kwargs))

    def load_history(self, path: str | Path, **kwargs: Any) -> Any:
        """chaos.api.load_history(path, **kwargs)."""
        from chaos import api

        return api.load_history(path, **kwargs)


@pytest.fixture
def chaos(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosFixture]:
    """Run chaos tests from this test: `chaos.run(target=..., nemesis=..., time_limit=...)`
    returns a chaos.api.Result (`.valid`, `.verdict`, `.run_dir`, `.summary()`)."""
    store = request.config.getoption("chaos_store")
    if not store:
        store = str(tmp_path_factory.getbasetemp() / "chaos-store")
    runs: list[Result] = []
    request.node.stash[RUNS] = runs
    yield ChaosFixture(str(store), request.config.getoption("chaos_seed"), runs,
                       request.node.user_properties)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    outcome = yield
    runs = item.stash.get(RUNS, None)
    if not runs or call.when != "call":
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        lines = [f"{r.verdict}: {r.run_dir or r.path}"
                 + (f" (seed {r.seed})" if r.seed is not None else "")
                 + (f"\n  {r.reasons[0]}" if r.reasons else "") for r in runs]
        report.sections.append(("chaos runs", "\n".join(lines)))
