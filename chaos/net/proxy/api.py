"""The Toxiproxy HTTP API, by hand on asyncio streams (HTTP/1.1, keep-alive, no dependencies).

Routes, status codes, JSON shapes and error bodies follow Toxiproxy 2.12 as described in
shared/reference/toxiproxy-api.md, so toxiproxy-python, `requests` or curl scripts written for
the real server work unchanged: 201 for proxy create and /populate but 200 for toxic create,
`{"error": ..., "status": ...}` bodies sent as text/plain, 404 `404 page not found` for unknown
paths, 405 for a known path with the wrong method, 403 for browser user agents.

A malformed request gets a 4xx and never takes the server down: every handler error is caught
and answered (500 with the message if it is a bug), and one client's garbage only closes that
client's connection. Limits: a request line over 64 KiB is 414, headers over MAX_HEADER 431,
a body over MAX_BODY 413, JSON nested too deeply to decode 400; after such an answer the
connection is closed gracefully (what the client still sends is read and dropped for a
moment), so the client gets the status instead of a reset.
"""
from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any
from urllib.parse import unquote

from chaos.net.proxy.server import VERSION, PopulateError, ProxyServer
from chaos.net.proxy.toxics import ApiError, new_toxic, update_toxic

MAX_HEADER = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
IDLE_TIMEOUT = 60.0  # keep-alive connections idle longer than this are closed
READ_TIMEOUT = 15.0  # a request must arrive whole within this
LINGER = 1.0  # after an error answer, how long what the client still sends is drained
LINGER_BYTES = 16 * 1024 * 1024

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
    414: "URI Too Long", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented",
}
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class Response:
    """Status, content type and body bytes of one answer."""

    def __init__(self, status: int, body: bytes = b"", ctype: str | None = None) -> None:
        self.status, self.body, self.ctype = status, body, ctype


def ok(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), JSON)


def error(status: int, message: str) -> Response:
    body = json.dumps({"error": message, "status": status}, separators=(",", ":")) + "\n"
    return Response(status, body.encode(), TEXT)


class BadHttp(Exception):
    """The bytes are not an HTTP/1.x request we can answer; close after replying 400/413."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None = None
) -> tuple[str, str, dict[str, str], bytes] | None:
    """(method, target, headers, body) of the next request, None on a clean EOF."""
    try:
        line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
    except asyncio.TimeoutError:
        return None
    except ValueError:  # longer than the stream's line limit (64 KiB)
        raise BadHttp(414, "request line too long") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise BadHttp(400, "truncated request line")
    parts = line.decode("latin-1").strip().split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadHttp(400, "malformed request line")
    method, target, _version = parts
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        try:
            raw = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
        except ValueError:  # one header line longer than the stream's limit
            raise BadHttp(431, "request header fields too large") from None
        size += len(raw)
        if size > MAX_HEADER:
            raise BadHttp(431, "request header fields too large")
        if not raw.endswith(b"\n"):
            raise BadHttp(400, "truncated headers")
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        key, sep, value = text.partition(":")
        if not sep:
            raise BadHttp(400, "malformed header")
        headers[key.strip().lower()] = value.strip()
    body = b""
    if headers.get("expect", "").lower() == "100-continue":
        if writer is not None:  # curl waits (1 s) for this before sending a large body
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            try:
                n = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadHttp(400, "bad chunk size") from None
            if n == 0:
                while (await asyncio.wait_for(reader.readline(), READ_TIMEOUT)).strip():
                    pass
                break
            if len(body) + n > MAX_BODY:
                raise BadHttp(413, "body too large")
            body += await asyncio.wait_for(reader.readexactly(n + 2), READ_TIMEOUT)
            body = body[:-2]
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadHttp(400, "bad Content-Length") from None
        if length < 0:
            raise BadHttp(400, "bad Content-Length")
        if length > MAX_BODY:
            raise BadHttp(413, "body too large")
        body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
    return method.upper(), target, headers, body


def decode(body: bytes) -> Any:
    """Lenient JSON like Go's decoder: trailing garbage ignored, empty body = `EOF` error."""
    try:
        text = body.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        raise ApiError(400, "bad request body: invalid UTF-8") from None
    if not text:
        raise ApiError(400, "bad request body: EOF")
    try:
        obj, _end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"bad request body: {exc.msg} at offset {exc.pos}") from None
    except RecursionError:  # "[[[[..." deeper than the decoder's recursion limit
        raise ApiError(400, "bad request body: JSON nested too deeply") from None
    return obj


def _methods(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise _MethodNotAllowed()


class _MethodNotAllowed(Exception):
    pass


class _NotFound(Exception):
    pass


async def route(server: ProxyServer, method: str, path: str, body: bytes) -> Response:
    """Dispatch one request to the registry; ApiError becomes the error body."""
    segs = [unquote(s) for s in path.split("/")[1:]]
    if path == "/" or any(not s for s in segs):
        raise _NotFound()
    head = segs[0]
    if len(segs) == 1:
        if head == "version":
            _methods(method, ("GET",))
            text = json.dumps({"version": VERSION}) + "\n"
            return Response(200, text.encode(), "application/json;charset=utf-8")
        if head == "reset":
            _methods(method, ("POST",))
            await server.reset()
            return Response(204)
        if head == "populate":
            _methods(method, ("POST",))
            return await _populate(server, decode(body))
        if head == "proxies":
            _methods(method, ("GET", "POST"))
            if method == "GET":
                return ok({n: server.proxies[n].to_json() for n in sorted(server.proxies)})
            return ok((await server.create(decode(body))).to_json(), 201)
        raise _NotFound()
    if head != "proxies" or len(segs) > 4 or (len(segs) >= 3 and segs[2] != "toxics"):
        raise _NotFound()
    name = segs[1]
    if len(segs) == 2:
        _methods(method, ("GET", "POST", "PATCH", "DELETE"))
        if method == "GET":
            return ok(server.get(name).to_json())
        if method == "DELETE":
            await server.delete(name)
            return Response(204)
        return ok((await server.update(name, decode(body))).to_json())
    if len(segs) == 3:
        _methods(method, ("GET", "POST"))
        proxy = server.get(name)
        if method == "GET":
            return ok([t.to_json() for t in proxy.listed()])
        toxic = new_toxic(decode(body))
        proxy.add_toxic(toxic)
        return ok(toxic.to_json())
    _methods(method, ("GET", "POST", "PATCH", "DELETE"))
    proxy = server.get(name)
    if method == "GET":
        return ok(proxy.find(segs[3]).to_json())
    if method == "DELETE":
        proxy.remove_toxic(segs[3])
        return Response(204)
    toxic = proxy.find(segs[3])
    update_toxic(toxic, decode(body))
    proxy.notify()
    return ok(toxic.to_json())


async def _populate(server: ProxyServer, body: Any) -> Response:
    try:
        done = await server.populate(body)
    except PopulateError as exc:
        proxies = [p.to_json() for p in exc.done] or None
        obj = {"error": exc.message, "status": exc.status, "proxies": proxies}
        return Response(exc.status, json.dumps(obj, separators=(",", ":")).encode() + b"\n", JSON)
    return ok({"proxies": [p.to_json() for p in done] if done else None}, 201)


async def answer(server: ProxyServer, method: str, target: str, headers: dict[str, str],
                 body: bytes) -> Response:
    """One full request -> response, never raising."""
    if headers.get("user-agent", "").startswith("Mozilla/"):
        return Response(403, b"User agent not allowed", TEXT)
    path = target.split("?", 1)[0]
    try:
        async with server.lock:
            return await route(server, method, path, body)
    except ApiError as exc:
        return error(exc.status, exc.message)
    except _NotFound:
        return Response(404, b"404 page not found\n", TEXT)
    except _MethodNotAllowed:
        return Response(405)
    except Exception as exc:  # noqa: BLE001 - a bug must not kill the server
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


async def handle_client(server: ProxyServer, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    """Serve requests on one HTTP connection until the client closes it or sends garbage."""
    try:
        while True:
            try:
                req = await read_request(reader, writer)
            except BadHttp as exc:
                await _send(writer, error(exc.status, str(exc)), close=True)
                await _linger(reader, writer)
                return
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError):
                return
            if req is None:
                return
            method, target, headers, body = req
            resp = await answer(server, method, target, headers, body)
            close = headers.get("connection", "").lower() == "close"
            await _send(writer, resp, close, head=method == "HEAD")
            if close:
                return
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.close()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read and drop what the client still sends (briefly, boundedly):
    closing with unread data makes the kernel send a reset, which can destroy our answer
    before the client has read it."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER
        drained = 0
        while drained < LINGER_BYTES:
            left = deadline - loop.time()
            if left <= 0:
                return
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                return
            drained += len(chunk)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        return


async def _send(writer: asyncio.StreamWriter, resp: Response, close: bool,
                head: bool = False) -> None:
    lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}"]
    if resp.ctype:
        lines.append(f"Content-Type: {resp.ctype}")
    if resp.status != 204:
        lines.append(f"Content-Length: {len(resp.body)}")
    lines.append(f"X-Toxiproxy-Request-Id: {secrets.token_hex(8)}")
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(data if head else data + resp.body)
    await writer.drain()
