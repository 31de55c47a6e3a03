"""The HTML pages of `chaos serve`: the run list, one run, the configurations, one trend.

Pure functions from the index's summaries (and query parameters) to HTML, so they are tested
without a server. Filtering, sorting and paging happen here, on the summaries in memory: a
page shows at most PAGE_SIZE rows whatever the store's size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote, urlencode

import jinja2

from chaos.archive.index import RunSummary
from chaos.archive.trends import configurations, series, svg_chart

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_SIZE = 100
#: sortable columns of the run list -> key
SORTS: dict[str, Any] = {
    "date": lambda r: r.started,
    "verdict": lambda r: r.verdict,
    "target": lambda r: r.target,
    "test": lambda r: r.test,
    "duration": lambda r: r.duration_s or 0.0,
    "ops": lambda r: r.ops_per_s or 0.0,
    "anomalies": lambda r: sum(r.anomalies.values()),
    "seed": lambda r: r.seed or 0,
}
VERDICTS = ("valid", "invalid", "unknown")


@dataclass(frozen=True)
class Query:
    """The run list's filters, sort and page, from the URL's query string."""

    q: str = ""               # substring of the test name, config or seed
    verdict: str = ""
    target: str = ""
    config: str = ""
    sort: str = "date"
    order: str = "desc"
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, list[str]]) -> Query:
        one = {k: (v[0] if v else "") for k, v in params.items()}
        try:
            page = max(1, int(one.get("page") or 1))
        except ValueError:
            page = 1
        sort = one.get("sort") or "date"
        return cls(q=one.get("q", "").strip(), verdict=one.get("verdict", ""),
                   target=one.get("target", ""), config=one.get("config", ""),
                   sort=sort if sort in SORTS else "date",
                   order="asc" if one.get("order") == "asc" else "desc", page=page)

    def matches(self, r: RunSummary) -> bool:
        if self.verdict and r.verdict != self.verdict:
            return False
        if self.target and r.target != self.target:
            return False
        if self.config and r.config_key != self.config:
            return False
        return not self.q or self.q.lower() in r.search_text

    @property
    def selection(self) -> tuple[str, ...]:
        """What decides the rows (all but the page): the key of a cached selection."""
        return (self.q, self.verdict, self.target, self.config, self.sort, self.order)

    def url(self, **change: Any) -> str:
        d = {"q": self.q, "verdict": self.verdict, "target": self.target,
             "config": self.config, "sort": self.sort, "order": self.order,
             "page": self.page, **change}
        return "/?" + urlencode({k: v for k, v in d.items() if v not in ("", None)})


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["urlq"] = lambda s: quote(str(s), safe="")
    env.filters["num"] = lambda v, f="{:.1f}": "" if v is None else f.format(v)
    return env


ENV = _env()


def select(runs: Sequence[RunSummary], query: Query) -> list[RunSummary]:
    """The runs the query's filters keep, in its order (every page of them)."""
    rows = [r for r in runs if query.matches(r)]
    rows.sort(key=SORTS[query.sort], reverse=query.order == "desc")
    return rows


def run_list(runs: Sequence[RunSummary], query: Query, store: str,
             rows: list[RunSummary] | None = None) -> str:
    """The run list: filtered, sorted, one page of it (`rows`: `select`'s answer, cached by
    the caller, so paging through 10,000 runs does not sort them again)."""
    rows = select(runs, query) if rows is None else rows
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(query.page, pages)
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    targets = sorted({r.target for r in runs})
    return ENV.get_template("runs.html.j2").render(
        title="runs", store=store, runs=shown, total=len(runs), matched=len(rows), page=page,
        pages=pages, query=query, targets=targets, verdicts=VERDICTS, sorts=list(SORTS))


def run_page(run: RunSummary, run_dir: Path, store: str) -> str:
    """One run: its summary and every file of it one click away."""
    files = []
    for root, dirs, names in os.walk(run_dir):
        dirs.sort()
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), run_dir)
            files.append(rel)
    return ENV.get_template("run.html.j2").render(title=run.id, store=store, run=run,
                                                 files=files)


def trends_index(runs: Sequence[RunSummary], store: str) -> str:
    return ENV.get_template("configs.html.j2").render(title="trends", store=store,
                                                     configs=configurations(runs))


def trend_page(key: str, runs: Sequence[RunSummary], store: str) -> str:
    """One configuration's charts and its runs, newest first."""
    mine = sorted((r for r in runs if r.config_key == key), key=lambda r: r.started)
    charts = [svg_chart(title, lines) for title, lines in series(mine).items()]
    return ENV.get_template("trend.html.j2").render(
        title=f"trend: {key}", store=store, key=key, charts=charts, runs=mine[::-1][:PAGE_SIZE],
        count=len(mine), query=Query(config=key))


def not_found(what: str, store: str) -> str:
    return ENV.get_template("base.html.j2").render(title="not found", store=store,
                                                  message=what)


__all__ = ["PAGE_SIZE", "Query", "run_list", "select", "run_page", "trend_page", "trends_index",
           "not_found"]
