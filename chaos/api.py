"""The public Python API: run a chaos test, analyse a history, read the verdict.

    from chaos import api

    r = api.run(target="kvlite", nemesis="partition", time_limit=20,
                options={"replication": "quorum", "failover": "majority"})
    assert r.valid, r.summary()

Keyword arguments are named like `chaos run`'s flags (`--time-limit` is `time_limit`, `-O k=v`
is `options={"k": v}`, `--store` is `store`); one left out takes the CLI's default, read from
the CLI itself so the two cannot drift. `run` is `chaos run`, not a copy of it: the same
checks (chaos.cli.run.plan_run: chaos.bounds, the target's option rules), then the same
chaos.cli.run.execute_plan (chaos.run.execute, --junit), the same results.json and report.html
in the store. Bad arguments raise `BadInput` naming the argument (`time_limit must be
positive (got 0)`) before anything starts; an infrastructure failure raises `SetupError`
(both are `ChaosError`, carrying the CLI's exit code). A verdict is never an exception: it
is the returned `Result`, whose `valid` is True only for a valid verdict (unknown is not).

`run` installs a SIGTERM handler while it runs (so a killed CI job still heals its faults),
which Python allows only in the main thread: call it from there (pytest does).

The results document behind a `Result` (`Result.document`) is what results.json holds; its
JSON Schema is chaos/report/results.schema.json (`RESULTS_SCHEMA`), described in docs/ci.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from chaos.errors import BadInput, ChaosError, ExitCode, SetupError
from chaos.history.model import History

__all__ = ["run", "analyze", "load_history", "Result", "CheckerResult", "Anomaly",
           "BadInput", "SetupError", "ChaosError", "ExitCode", "RESULTS_SCHEMA"]

#: the JSON Schema of results.json / `chaos run --json` / `chaos analyze --json`
RESULTS_SCHEMA = Path(__file__).resolve().parent / "report" / "results.schema.json"

Verdict = Literal["valid", "invalid", "unknown"]


@dataclass(frozen=True)
class Anomaly:
    """One thing a checker found (severity "anomaly") or flagged (severity "warning")."""

    kind: str                 # e.g. "lost-write", "stale-read", "split-brain-writes"
    message: str              # one line naming the element/key/nodes involved
    severity: str             # "anomaly" | "warning"
    key: Any = None
    time_ns: int | None = None  # ns since the history's start
    ops: tuple[int, ...] = ()   # history line indexes of the ops involved
    explanation: str | None = None  # the faults and leaders around it


@dataclass(frozen=True)
class CheckerResult:
    """One checker's verdict."""

    name: str
    verdict: Verdict
    anomalies: tuple[Anomaly, ...] = ()
    warnings: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()   # why it is unknown
    error: str | None = None        # the checker crashed (then unknown)
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"


@dataclass(frozen=True)
class Result:
    """The outcome of `run` or `analyze`: the verdict and everything it rests on."""

    verdict: Verdict
    exit_code: ExitCode        # what `chaos run` / `chaos analyze` would exit with
    checkers: Mapping[str, CheckerResult]
    reasons: tuple[str, ...]   # why the verdict is unknown, most telling first
    warnings: tuple[str, ...]
    run_dir: Path | None       # the stored run (None for `analyze` of a plain file)
    path: str | None           # the history checked
    seed: int | None           # the run's seed (`chaos run --replay RUN_DIR` repeats it)
    document: Mapping[str, Any]  # the results document itself (results.schema.json)

    @property
    def valid(self) -> bool:
        """True only when the verdict is valid: anomalies and unknown are both False."""
        return self.verdict == "valid"

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every anomaly (severity "anomaly", not warnings) of every checker, in order."""
        return [a for c in self.checkers.values() for a in c.anomalies
                if a.severity == "anomaly"]

    def summary(self) -> str:
        """What a person reads (as `chaos analyze` prints it): the verdict, on an unknown
        verdict why, each checker with its anomalies, then the run directory."""
        from chaos.history.summary import format_summary

        name = str(self.run_dir or self.path or "result")
        lines = [format_summary(name, self.document, self._history(),
                                self.document.get("format"))]
        if self.run_dir is not None:
            lines.append(f"run directory: {self.run_dir}" + (
                f" (seed {self.seed}; `chaos run --replay {self.run_dir}` repeats it)"
                if self.seed is not None else ""))
            if (self.run_dir / "report.html").exists():
                lines.append(f"report: {self.run_dir / 'report.html'}")
        return "\n".join(lines)

    def _history(self) -> History | None:
        """The checked history, to show the ops of each anomaly (None when unreadable)."""
        if not self.anomalies or not self.path or not Path(self.path).is_file():
            return None
        try:
            return load_history(self.path)
        except (ChaosError, OSError):
            return None

    def __str__(self) -> str:
        return self.summary()

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], seed: int | None = None,
                      run_dir: str | Path | None = None) -> "Result":
        """A Result from a results document (results.json, `chaos run --json`); `run_dir`
        when the document does not name it (`analyze` of a run directory)."""
        from chaos.report.results import normalize_results, verdict_word

        norm = normalize_results(doc)
        checkers = {name: CheckerResult(
            name=name, verdict=verdict_word(r["valid"]),  # type: ignore[arg-type]
            anomalies=tuple(Anomaly(kind=a["kind"], message=a["message"],
                                    severity=a["severity"], key=a["key"], time_ns=a["time"],
                                    ops=tuple(a["ops"]),
                                    explanation=None if a["explanation"] is None
                                    else str(a["explanation"]))
                            for a in r["anomalies"]),
            warnings=tuple(r["warnings"]), reasons=tuple(r["reasons"]),
            error=None if r["error"] is None else str(r["error"]), stats=r["stats"])
            for name, r in norm["results"].items()}
        verdict = verdict_word(norm["valid"])
        run_dir = doc.get("run_dir") or run_dir
        return cls(verdict=verdict,  # type: ignore[arg-type]
                   exit_code=ExitCode(int(doc.get("exit_code", _code(verdict)))),
                   checkers=checkers, reasons=tuple(str(r) for r in doc.get("reasons") or ()),
                   warnings=tuple(str(w) for w in doc.get("warnings") or ()),
                   run_dir=Path(run_dir) if run_dir else None, path=doc.get("path"),
                   seed=seed, document=doc)


def _code(verdict: str) -> ExitCode:
    from chaos.errors import verdict_exit_code

    return verdict_exit_code({"valid": True, "invalid": False}.get(verdict, "unknown"))


# -- run ------------------------------------------------------------------------------------

def _cli_params() -> dict[str, Any]:
    """`chaos run`'s options: python name -> click option (defaults, flags: one source)."""
    from chaos.cli.run import run as run_command

    return {p.name: p for p in run_command.params if p.name}


#: API names that differ from the click parameter names
_RENAMED = {"store": "store_dir"}
#: click parameters that are the CLI's output, not the run's
_CLI_ONLY = {"as_json", "quiet"}


def _name_arguments(message: str, params: Mapping[str, Any]) -> str:
    """A CLI error message with each flag replaced by the API argument it comes from:
    "--time-limit must be positive" -> "time_limit must be positive"."""
    api_name = {v: k for k, v in _RENAMED.items()}
    flags = {}
    for name, p in params.items():
        for opt in p.opts:
            flags[opt] = "options" if opt == "-O" else api_name.get(name, name)
    pattern = r"(?<![\w-])(" + "|".join(re.escape(f) for f in sorted(flags, key=len,
                                                                     reverse=True)) + r")\b"
    return re.sub(pattern, lambda m: flags[m.group(1)], message)


def run(*, target: str | None = None, workload: str | None = None,
        nemesis: str | Sequence[str] | None = None, time_limit: float | None = None,
        seed: int | None = None, options: Mapping[str, Any] | None = None,
        nodes: int | None = None, runtime: str | None = None, net: str | None = None,
        nemesis_interval: float | None = None, partition_shape: str | None = None,
        partition_mode: str | None = None, latency_ms: int | None = None,
        concurrency: int | None = None, rate: float | None = None, store: str | None = None,
        quiesce: float | None = None, op_timeout: float | None = None,
        client_placement: str | None = None, clock: str | None = None,
        replay: str | Path | None = None,
        nodes_file: str | None = None, ssh_user: str | None = None,
        ssh_key: str | None = None, junit: str | Path | None = None,
        progress: bool = False, workload_options: Mapping[str, Any] | None = None) -> Result:
    """Run one chaos test, exactly as `chaos run` with the same options, and return its Result.

    Every argument left None takes `chaos run`'s default (`chaos run --help` lists them):
    target kvlite, workload register, nemesis partition, time_limit 30, store ./store, a
    random seed (recorded: Result.seed). `nemesis` is a comma list or a list of fault kinds;
    `options` are the target's `-O` options, `workload_options` the workload's `-W` ones.
    `junit` writes JUnit XML as `--junit` does; `progress` shows the progress line on
    stderr. Raises BadInput (naming the argument) before anything starts, SetupError when the
    infrastructure fails, KeyboardInterrupt after cleaning up when the run was interrupted
    (Ctrl-C, SIGTERM).
    """
    from chaos.cli.run import execute_plan, plan_run
    from chaos.progress import Progress

    params = _cli_params()
    given = {"target": target, "workload": workload, "time_limit": time_limit, "seed": seed,
             "nodes": nodes, "runtime": runtime, "net": net,
             "nemesis_interval": nemesis_interval, "partition_shape": partition_shape,
             "partition_mode": partition_mode, "latency_ms": latency_ms,
             "concurrency": concurrency, "rate": rate, "store_dir": store, "quiesce": quiesce,
             "op_timeout": op_timeout, "client_placement": client_placement, "clock": clock,
             "replay": None if replay is None else str(replay), "nodes_file": nodes_file,
             "ssh_user": ssh_user, "ssh_key": ssh_key}
    kwargs: dict[str, Any] = {name: params[name].default if value is None else value
                              for name, value in given.items()}
    try:
        if nemesis is None:
            kwargs["nemesis"] = params["nemesis"].default
        elif isinstance(nemesis, str):
            kwargs["nemesis"] = nemesis
        elif isinstance(nemesis, Sequence) and all(isinstance(k, str) for k in nemesis):
            kwargs["nemesis"] = ",".join(nemesis) or "none"
        else:
            raise BadInput(f"nemesis must be a string or a list of strings (got {nemesis!r})")
        kwargs["options"] = _option_pairs(options)
        kwargs["workload_options"] = _option_pairs(workload_options, "workload_options")
        plan = plan_run(**kwargs)
    except BadInput as exc:
        raise BadInput(_name_arguments(str(exc), params)) from None
    if junit is not None:
        from chaos.store import check_output_file

        check_output_file(junit, "junit")
    outcome, doc = execute_plan(plan, Progress(plan.config.time_limit, enabled=progress), junit)
    if outcome.interrupted:  # Ctrl-C / SIGTERM: faults healed, nodes stopped; stop the caller
        raise KeyboardInterrupt(f"chaos run interrupted; the history so far is in "
                                f"{outcome.run_dir / 'history.jsonl'}")
    return Result.from_document(doc, seed=plan.config.seed)


def _option_pairs(options: Mapping[str, Any] | None, name: str = "options") -> list[str]:
    """`options={"replication": "quorum"}` -> the `-O replication=quorum` strings (the same
    for `workload_options` and -W); `name` is the argument errors name."""
    if options is None:
        return []
    if not isinstance(options, Mapping):
        raise BadInput(f"{name} must be a mapping of option name to value "
                       f"(got {type(options).__name__})")
    pairs = []
    for key, value in options.items():
        if not isinstance(key, str) or not key:
            raise BadInput(f"{name}: option names must be non-empty strings (got {key!r})")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        pairs.append(f"{key}={text}")
    return pairs


# -- analyze and load_history -------------------------------------------------------------

def analyze(path: str | Path, *, format: str = "auto", checker: str | Sequence[str] = (),
            time_limit: float | None = None, results: bool = True,
            junit: str | Path | None = None) -> Result:
    """Check a history file or run directory, as `chaos analyze PATH` does.

    `format`: auto | jsonl | jepsen-edn | porcupine; `checker`: run only these (default:
    from the ops present); `time_limit`: the budget per checker in seconds; `results`:
    write results.json beside the history (as the CLI does); `junit`: also write JUnit XML.
    Raises BadInput for a missing or malformed history (naming file and line).
    """
    from chaos.checkers import CHECKERS
    from chaos.cli.analyze import analyze_one, write_results
    from chaos.history.importers.detect import FORMATS

    if format not in FORMATS:
        raise BadInput(f"format must be one of {', '.join(FORMATS)} (got {format!r})")
    names = [checker] if isinstance(checker, str) else list(checker)
    unknown = [n for n in names if n not in CHECKERS]
    if unknown:
        raise BadInput(f"checker: unknown {', '.join(map(repr, unknown))}; choose from "
                       f"{', '.join(CHECKERS)}")
    opts: dict[str, Any] = {}
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) \
                or not time_limit > 0:
            raise BadInput(f"time_limit must be a positive number (got {time_limit!r})")
        opts["time_limit"] = float(time_limit)
    if junit is not None:
        from chaos.store import check_output_file

        check_output_file(junit, "junit")
    doc, _history, _fmt = analyze_one(str(path), format, names or None, opts)
    if results:
        write_results(str(path), doc, set())
    if junit is not None:
        from chaos.report.junit import suite_name, write_junit

        write_junit(doc, junit, suite_name=suite_name(path))
    return Result.from_document(doc, run_dir=path if Path(path).is_dir() else None)


def load_history(path: str | Path, *, format: str = "auto") -> History:
    """Read a history (our JSONL, a run directory, Jepsen EDN, a Porcupine log) into a
    chaos.history.model.History: `.ops` (the lines as dicts) and `.pairs` (invoke/completion
    pairs). Raises BadInput naming file and line for a malformed one."""
    from chaos.history.importers.detect import FORMATS, detect, load_any

    if format not in FORMATS:
        raise BadInput(f"format must be one of {', '.join(FORMATS)} (got {format!r})")
    return load_any(str(path), detect(str(path)) if format == "auto" else format)
