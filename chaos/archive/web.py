"""`chaos serve`: a local web app over the store (stdlib ThreadingHTTPServer, no framework).

Routes: `/` the run list (filter, sort, pages), `/run/<test>/<stamp>` one run and its files,
`/trends` the configurations, `/trends?config=KEY` one configuration's plotted trends,
`/files/<path>` a file of the store. Nothing else is served, and nothing outside the store:
`store_file` refuses `..`, absolute paths, encoded variants of both (the path is decoded once,
then checked) and symlinks that resolve outside the store, answering 404 without saying why.

The pages read the in-memory index (chaos.archive.index.Index), which each request brings up
to date with one stat of store/index.jsonl, so a page costs the same with 10 or 10,000 runs
on disk (the run list filters and sorts summaries in memory; a page shows 100 rows).
"""
from __future__ import annotations

import mimetypes
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from chaos.archive import pages
from chaos.archive.index import Index

#: files shown as text in the browser (history, logs, configs) rather than downloaded
TEXT_SUFFIXES = {".jsonl", ".log", ".txt", ".json", ".out", ".err", ".conf", ".yml", ".yaml",
                 ".xml", ".edn"}


def store_file(root: Path, rel: str) -> Path | None:
    """The regular file `rel` (URL-decoded once, '/'-separated) names inside `root`, or None.

    None for: a NUL byte, an absolute path, any `..` component, a path that does not exist,
    is not a regular file, or resolves (through any symlink) outside `root`.
    `root` must be resolved already.
    """
    if "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("..", ".") for p in parts) or not all(parts):
        return None
    try:
        path = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


class ArchiveServer(ThreadingHTTPServer):
    """The HTTP server: holds the store's root and its index."""

    daemon_threads = True

    def __init__(self, store: Path, host: str, port: int) -> None:
        self.root = Path(store).resolve()
        self.index = Index(self.root)
        self.label = str(store)
        self.lock = threading.Lock()
        self._runs: list[Any] = []
        self._runs_version = -1
        self._selections: dict[tuple[str, ...], list[Any]] = {}
        self._pages: dict[tuple[str, ...], str] = {}
        super().__init__((host, port), Handler)

    def runs(self) -> list[Any]:
        with self.lock:
            self.index.refresh()
            if self._runs_version != self.index.version:
                self._runs = list(self.index.runs.values())
                self._runs_version, self._selections = self.index.version, {}
                self._pages = {}
            return self._runs

    def run(self, run_id: str) -> Any:
        """One run's summary, or None."""
        self.runs()
        return self.index.runs.get(run_id)

    def cached(self, key: tuple[str, ...], render: Callable[[list[Any]], str]) -> str:
        """A page computed from all runs, kept until the index changes (the trends: one
        pass over 10,000 summaries is worth doing once per new run, not per view)."""
        runs = self.runs()
        with self.lock:
            page = self._pages.get(key) if self._runs_version == self.index.version else None
        if page is None:
            page = render(runs)
            with self.lock:
                if len(self._pages) >= 64:
                    self._pages.pop(next(iter(self._pages)))
                self._pages[key] = page
        return page

    def select(self, query: pages.Query) -> tuple[list[Any], list[Any]]:
        """(all runs, the query's rows), the rows cached until the index changes (a few
        recent selections: the pages of one list, its sort orders, its filters)."""
        runs = self.runs()
        with self.lock:
            rows = self._selections.get(query.selection)
            if rows is None or self._runs_version != self.index.version:
                rows = pages.select(runs, query)
                if len(self._selections) >= 32:
                    self._selections.pop(next(iter(self._selections)))
                self._selections[query.selection] = rows
            return runs, rows


class Handler(BaseHTTPRequestHandler):
    server: ArchiveServer
    server_version = "chaos-serve"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # one line per request would bury the URL line; errors are answered, not logged

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib's name
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802 - stdlib's name
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        path = url.path
        srv = self.server
        try:
            if path == "/":
                query = pages.Query.parse(params)
                runs, rows = srv.select(query)
                body = pages.run_list(runs, query, srv.label, rows)
            elif path == "/trends":
                key = (params.get("config") or [""])[0]
                body = srv.cached(("trends", key), lambda runs: (
                    pages.trend_page(key, runs, srv.label) if key else
                    pages.trends_index(runs, srv.label)))
            elif path.startswith("/run/"):
                run_id = unquote(path[len("/run/"):]).strip("/")
                found = srv.run(run_id)
                run_dir = store_file(srv.root, f"{run_id}/config.json") if found else None
                if found is None or run_dir is None:
                    return self._page(HTTPStatus.NOT_FOUND,
                                      pages.not_found(f"no run {run_id}", srv.label), head)
                body = pages.run_page(found, run_dir.parent, srv.label)
            elif path.startswith("/files/"):
                return self._file(unquote(path[len("/files/"):]), head)
            else:
                return self._page(HTTPStatus.NOT_FOUND,
                                  pages.not_found("no such page", srv.label), head)
        except (BrokenPipeError, ConnectionResetError):
            return
        self._page(HTTPStatus.OK, body, head)

    def _page(self, status: HTTPStatus, body: str, head: bool) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _file(self, rel: str, head: bool) -> None:
        path = store_file(self.server.root, rel)
        if path is None:  # outside the store, or absent: the same answer, nothing leaked
            return self._page(HTTPStatus.NOT_FOUND,
                              pages.not_found("no such file in the store", self.server.label),
                              head)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in TEXT_SUFFIXES:
            ctype = "text/plain"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        try:
            f = open(path, "rb")
        except OSError:
            return self._page(HTTPStatus.NOT_FOUND,
                              pages.not_found("no such file in the store", self.server.label),
                              head)
        with f:
            size = Path(f.name).stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if not head:
                try:
                    shutil.copyfileobj(f, self.wfile, 1 << 16)
                except (BrokenPipeError, ConnectionResetError):
                    pass


__all__ = ["ArchiveServer", "store_file"]
