"""Nightly CI for chaos: the workflow files `chaos ci init` writes (GitHub Actions, GitLab CI).

A workflow is a matrix of cells (targets x nemeses x seeds), each one `chaos run` with
`--junit`, then `chaos ci summary` (chaos.ci.summary) for a Markdown table of the verdicts,
the store kept as an artifact, and the exit-code policy of docs/ci.md written out in the file
and applied by its last step: 1 fails the cell, 2 is flagged, 3 is an infrastructure failure.

The files are rendered from the templates beside this module. Everything the user gives is
checked first (the targets exist, the nemeses parse, `--run-args` are `chaos run` options, the
time limit is in chaos.bounds' range), so a generated workflow does not fail at 3 a.m. on a
typo. Which cells need Docker node images follows from each target's default runtime.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from chaos.errors import BadInput

PROVIDERS = ("github", "gitlab")
#: where each provider's file goes, relative to --output
FILES = {"github": Path(".github/workflows/chaos-nightly.yml"),
         "gitlab": Path(".gitlab-ci.yml")}
TEMPLATES = {"github": "github.yml.j2", "gitlab": "gitlab-ci.yml.j2"}
#: the minutes a cell may take beyond its time limit (cluster start, image build, checks)
SLACK_MINUTES = 30


@dataclass(frozen=True)
class Workflow:
    """What one nightly workflow runs (see `chaos ci init --help`)."""

    provider: str = "github"
    targets: tuple[str, ...] = ("kvlite",)
    nemeses: tuple[str, ...] = ("partition", "kill")
    seeds: int = 3
    time_limit: float = 60.0
    run_args: str = ""
    install: str = "chaos"
    cron: str = "17 3 * * *"

    def validate(self) -> list[tuple[str, str]]:
        """Raise BadInput naming the option for anything wrong; return (target, runtime)."""
        from chaos import plugins
        from chaos.bounds import BOUNDS
        from chaos.schedule import parse_nemeses

        if self.provider not in PROVIDERS:
            raise BadInput(f"--provider: {self.provider!r}; choose from {', '.join(PROVIDERS)}")
        if not self.targets or not self.nemeses:
            raise BadInput("--target and --nemesis need at least one value each")
        runtimes = []
        for t in self.targets:
            target = plugins.load_target(plugins.resolve_ref(t))
            runtimes.append((t, str(target.default_runtime)))
        for n in self.nemeses:
            parse_nemeses(n)
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) \
                or not 1 <= self.seeds <= 100:
            raise BadInput(f"--seeds must be an integer from 1 to 100 (got {self.seeds!r})")
        problem = BOUNDS["time_limit"].problem(self.time_limit)
        if problem:
            raise BadInput(problem)
        _check_run_args(self.run_args)
        if len(self.cron.split()) != 5:
            raise BadInput(f"--cron {self.cron!r}: expected 5 fields (minute hour day month "
                           "weekday), e.g. '17 3 * * *'")
        for text, option in ((self.install, "--install"), (self.run_args, "--run-args")):
            if any(c in text for c in '"\\\n'):
                raise BadInput(f"{option}: no double quotes, backslashes or newlines (it is "
                               "written into a YAML string)")
        return runtimes

    def render(self) -> str:
        """The workflow file's text (validated first)."""
        import jinja2

        from importlib.metadata import PackageNotFoundError, version as installed

        runtimes = self.validate()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
                                 trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                 undefined=jinja2.StrictUndefined, autoescape=False)
        try:
            version = installed("chaos")
        except PackageNotFoundError:
            version = "dev"
        tag = hashlib.sha256(self.install.encode()).hexdigest()[:8]
        return env.get_template(TEMPLATES[self.provider]).render(
            version=f"{version}-{tag}", cron=self.cron, targets=list(self.targets),
            nemeses=list(self.nemeses), seeds=list(range(1, self.seeds + 1)),
            runtimes=runtimes, time_limit=f"{self.time_limit:g}", run_args=self.run_args,
            install=self.install,
            timeout_minutes=int(self.time_limit // 60) + SLACK_MINUTES)


def _check_run_args(run_args: str) -> None:
    """--run-args must parse as `chaos run` options, and must not set what the matrix sets."""
    import click

    from chaos.cli.run import run as run_command

    try:
        args = shlex.split(run_args)
    except ValueError as exc:
        raise BadInput(f"--run-args: {exc}") from None
    owned = {"--target", "--nemesis", "--seed", "--time-limit", "--store", "--junit", "--json",
             "--replay"}
    clash = sorted(a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in owned)
    if clash:
        raise BadInput(f"--run-args: {', '.join(clash)} is set by the workflow itself")
    try:
        run_command.make_context("chaos run", list(args))
    except click.UsageError as exc:
        raise BadInput(f"--run-args: {exc.format_message()}") from None


def write(workflow: Workflow, output: str | Path, force: bool = False) -> Path:
    """Render `workflow` and write it under `output`; refuse to overwrite without `force`."""
    text = workflow.render()
    path = Path(output) / FILES[workflow.provider]
    if path.exists() and not force:
        raise BadInput(f"{path} exists; --force overwrites it (or --output elsewhere)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write {path}: {exc.strerror or exc}") from None
    return path


def commands(workflow: Workflow) -> Sequence[str]:
    """The chaos commands one cell runs, for the printed next steps (the file has them all)."""
    return [f"chaos run --target {workflow.targets[0]} --nemesis {workflow.nemeses[0]} "
            f"--seed 1 --time-limit {workflow.time_limit:g} --store store --junit junit/x.xml "
            f"{workflow.run_args}".rstrip(), "chaos ci summary store"]
