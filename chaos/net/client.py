"""The Toxiproxy client the toolkit uses: one server URL per instance, timeouts, clear errors.

Why not call toxiproxy-python (the product's named client) directly everywhere: its server
address is a class attribute (one server per process), it has no timeouts, a 500 (port in use)
surfaces as `KeyError: 'name'`, and it has no toxic update, no GET of one proxy, no real
/populate (shared/reference/toxiproxy-api.md §8). So `ProxyClient` speaks the HTTP API itself
(stdlib urllib, POST for updates so it works with every 2.x server) and maps every failure to
`ProxyError` (a SetupError: exit code 3) carrying the HTTP status and the server's message.
`ProxyClient.toxiproxy()` hands out a toxiproxy-python `Toxiproxy` pointed at the same server
for code that wants that API.

Backend choice (`connect_or_start`): a real Toxiproxy when `TOXIPROXY_URL` (or the given URL)
answers GET /version, else the embedded server (chaos.net.proxy) in a background thread.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Self

from chaos.errors import SetupError

DEFAULT_URL = "http://127.0.0.1:8474"


class ProxyError(SetupError):
    """The proxy server refused or failed a request (`status` 0 = could not reach it)."""

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        what = f"{method} {path}: " if method else ""
        super().__init__(f"toxiproxy: {what}{message}" + (f" (HTTP {status})" if status else ""))


def parse_version(body: bytes) -> str:
    """The version from any 2.x /version body: plain `2.4.0`, JSON, or 2.6.0's broken `\\n`."""
    text = body.decode("utf-8", "replace").strip()
    text = text.removesuffix("\\n")
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    if isinstance(obj, dict):
        return str(obj.get("version", ""))
    return str(obj)


class ProxyClient:
    """A Toxiproxy API client bound to one server URL. Not thread-safe per call; cheap to make.

    Methods return the server's JSON (dicts as in the API: name, listen, upstream, enabled,
    toxics). `close()` also stops the embedded server when this client started it.
    """

    def __init__(self, url: str | None = None, timeout: float = 10.0) -> None:
        self.url = (url or os.environ.get("TOXIPROXY_URL") or DEFAULT_URL).rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.timeout = timeout
        self._embedded: Any = None  # a ServerThread/ServerProcess connect_or_start started

    @property
    def embedded(self) -> bool:
        """True when this client runs the embedded server (stopped by `close()`)."""
        return self._embedded is not None

    # -- transport --------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; the decoded JSON (None for 204). Raises ProxyError on any failure."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("User-Agent", "chaos-toolkit")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            message = raw.decode("utf-8", "replace").strip()
            try:
                obj = json.loads(message)
                message = obj.get("error") or obj.get("title") or message
            except (ValueError, AttributeError):
                pass
            raise ProxyError(exc.code, message or exc.reason, method, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ProxyError(0, f"cannot reach {self.url}: {reason}", method, path) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ProxyError(200, f"not JSON: {raw[:80]!r}", method, path) from None

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    # -- server -----------------------------------------------------------------------------

    def version(self) -> str:
        req = urllib.request.Request(self.url + "/version", headers={"User-Agent": "chaos"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return parse_version(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            raise ProxyError(0, f"cannot reach {self.url}: {exc}", "GET", "/version") from None

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.request("POST", "/reset")

    # -- proxies ----------------------------------------------------------------------------

    def proxies(self) -> dict[str, dict[str, Any]]:
        return self.request("GET", "/proxies") or {}

    def get_proxy(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/proxies/{self._q(name)}")

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
                     enabled: bool = True) -> dict[str, Any]:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return self.request("POST", "/proxies", body)

    def update_proxy(self, name: str, **fields: Any) -> dict[str, Any]:
        """Change any of listen, upstream, enabled (POST: works on every 2.x server)."""
        return self.request("POST", f"/proxies/{self._q(name)}", fields)

    def enable(self, name: str) -> dict[str, Any]:
        return self.update_proxy(name, enabled=True)

    def disable(self, name: str) -> dict[str, Any]:
        return self.update_proxy(name, enabled=False)

    def delete_proxy(self, name: str, missing_ok: bool = False) -> None:
        try:
            self.request("DELETE", f"/proxies/{self._q(name)}")
        except ProxyError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    def populate(self, proxies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Server-side /populate: create or replace many proxies in one request."""
        return (self.request("POST", "/populate", proxies) or {}).get("proxies") or []

    # -- toxics -----------------------------------------------------------------------------

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/proxies/{self._q(proxy)}/toxics") or []

    def add_toxic(self, proxy: str, type: str, stream: str = "downstream",
                  name: str | None = None, toxicity: float = 1.0,
                  attributes: dict[str, int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity,
                                "attributes": attributes or {}}
        if name:
            body["name"] = name
        return self.request("POST", f"/proxies/{self._q(proxy)}/toxics", body)

    def update_toxic(self, proxy: str, name: str, attributes: dict[str, int] | None = None,
                     toxicity: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = attributes
        if toxicity is not None:
            body["toxicity"] = toxicity
        return self.request("POST", f"/proxies/{self._q(proxy)}/toxics/{self._q(name)}", body)

    def delete_toxic(self, proxy: str, name: str, missing_ok: bool = False) -> None:
        try:
            self.request("DELETE", f"/proxies/{self._q(proxy)}/toxics/{self._q(name)}")
        except ProxyError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    # -- interop and lifecycle --------------------------------------------------------------

    def toxiproxy(self) -> Any:
        """A toxiproxy-python `Toxiproxy` aimed at this server.

        Its address is process-global (a class attribute), so this re-points every
        toxiproxy-python object in the process; fine for one server per process.
        """
        from toxiproxy import Toxiproxy

        parts = urllib.parse.urlsplit(self.url)
        tp = Toxiproxy()
        tp.update_api_consumer(parts.hostname or "127.0.0.1", parts.port or 80)
        return tp

    def close(self) -> None:
        """Stop the embedded server if this client started it (idempotent)."""
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServerProcess:
    """The embedded server as a child process (`python -m chaos.net.proxy --port 0`).

    Keeps proxy traffic off the caller's GIL (a thread shares it with the test harness).
    `stop()` sends SIGTERM (the server closes every listener and connection), then SIGKILL
    if it has not exited within 5 s.
    """

    def __init__(self, host: str = "127.0.0.1", start_timeout: float = 20.0) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chaos.net.proxy", "--host", host, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(start_timeout)
        line = ready[0] if ready else ""
        match = re.search(r"(http://\S+)", line)
        if not match:
            self.stop()
            err = self.proc.stderr.read().strip() if self.proc.stderr else ""
            raise SetupError(f"the embedded proxy server did not start: {err or line or 'timeout'}")
        self.url = match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def connect_or_start(url: str | None = None, timeout: float = 10.0,
                     probe_timeout: float = 1.0, embedded: str = "thread") -> ProxyClient:
    """A client for a real Toxiproxy if `url` (default $TOXIPROXY_URL) answers /version.

    Otherwise start the embedded server on 127.0.0.1 with a free port — in a background thread
    of this process (`embedded="thread"`) or as a child process (`"subprocess"`) — and return
    a client for it: `client.embedded` is True and `client.close()` stops it (listeners and
    connections included).
    """
    if embedded not in ("thread", "subprocess"):
        raise ValueError(f"embedded must be 'thread' or 'subprocess', not {embedded!r}")
    target = url or os.environ.get("TOXIPROXY_URL")
    if target:
        client = ProxyClient(target, timeout=probe_timeout)
        try:
            client.version()
        except ProxyError:
            pass
        else:
            client.timeout = timeout
            return client
    server: Any
    if embedded == "subprocess":
        server = ServerProcess()
    else:
        from chaos.net.proxy.server import ServerThread

        try:
            server = ServerThread("127.0.0.1", 0).start()
        except OSError as exc:
            raise SetupError(f"cannot start the embedded proxy server: {exc}") from None
    client = ProxyClient(server.url, timeout=timeout)
    client._embedded = server
    return client
