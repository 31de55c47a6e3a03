"""Raw HTTP against the embedded Toxiproxy server: status codes, JSON shapes, error bodies."""
from __future__ import annotations

import http.client
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib.parse import quote

from chaos.net.echo import EchoServer


@pytest.fixture(scope="module")
def echo():
    with EchoServer() as e:
        yield e


@pytest.fixture(autouse=True)
def clean(server):
    yield
    for name in list(call(server, "GET", "/proxies")[2]):
        call(server, "DELETE", "/proxies/" + name)


def call(server, method, path, body=None, raw=None, headers=None):
    """(status, headers, decoded body or text) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=10)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = text.decode()
    return resp.status, dict(resp.getheaders()), decoded


def make(server, echo, name="p", **extra):
    body = {"name": name, "upstream": str(echo.addr), "listen": "127.0.0.1:0", **extra}
    status, _, proxy = call(server, "POST", "/proxies", body)
    assert status == 201, proxy
    return proxy


def test_version_is_json(server):
    status, headers, body = call(server, "GET", "/version")
    assert status == 200 and body == {"version": "2.12.0"}
    assert headers["Content-Type"].startswith("application/json")
    assert "X-Toxiproxy-Request-Id" in headers


def test_create_reports_real_port_and_shape(server, echo):
    proxy = make(server, echo)
    # Toxiproxy's fields in its order, then our traffic extension (chaos.net.proxy.proxy)
    assert list(proxy) == ["name", "listen", "upstream", "enabled", "Logger", "toxics",
                           "chaos_traffic"]
    host, port = proxy["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert proxy["enabled"] is True and proxy["toxics"] == [] and proxy["Logger"] == {}
    assert proxy["chaos_traffic"] == {"accepted": 0, "upstream_bytes": 0,
                                      "downstream_bytes": 0, "live": 0}
    socket.create_connection((host, int(port)), timeout=2).close()
    again = call(server, "GET", "/proxies/p")[2]
    assert again.pop("chaos_traffic")["accepted"] == 1
    assert again == {k: v for k, v in proxy.items() if k != "chaos_traffic"}


def test_list_is_a_sorted_map(server, echo):
    assert call(server, "GET", "/proxies")[2] == {}
    make(server, echo, "b")
    make(server, echo, "a")
    status, _, body = call(server, "GET", "/proxies")
    assert status == 200 and list(body) == ["a", "b"]


def test_duplicate_proxy_409_with_exact_body(server, echo):
    make(server, echo)
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=5)
    conn.request("POST", "/proxies", json.dumps({"name": "p", "upstream": "x:1"}))
    resp = conn.getresponse()
    assert resp.status == 409
    assert resp.read() == b'{"error":"proxy already exists","status":409}\n'
    assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
    conn.close()


def test_missing_proxy_and_toxic_404(server, echo):
    assert call(server, "GET", "/proxies/nope")[:3:2] == (
        404, {"error": "proxy not found", "status": 404})
    assert call(server, "DELETE", "/proxies/nope")[0] == 404
    assert call(server, "POST", "/proxies/nope/toxics", {"type": "latency"})[0] == 404
    make(server, echo)
    assert call(server, "GET", "/proxies/p/toxics/t")[2] == {
        "error": "toxic not found", "status": 404}
    assert call(server, "DELETE", "/proxies/p/toxics/t")[0] == 404


def test_missing_fields_400(server):
    no_name = call(server, "POST", "/proxies", {"upstream": "x:1"})[2]
    assert no_name["error"] == "missing required field: name"
    no_upstream = call(server, "POST", "/proxies", {"name": "q"})[2]
    assert no_upstream["error"] == "missing required field: upstream"


def test_port_in_use_500_and_not_registered(server, echo):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status, _, body = call(server, "POST", "/proxies", {
            "name": "p", "upstream": str(echo.addr), "listen": f"127.0.0.1:{port}"})
    assert status == 500
    assert body == {"error": f"listen tcp 127.0.0.1:{port}: bind: address already in use",
                    "status": 500}
    assert call(server, "GET", "/proxies/p")[0] == 404


def test_toxic_create_200_defaults_and_order(server, echo):
    make(server, echo)
    status, _, toxic = call(server, "POST", "/proxies/p/toxics", {"type": "latency"})
    assert status == 200
    assert toxic == {"attributes": {"latency": 0, "jitter": 0}, "name": "latency_downstream",
                     "type": "latency", "stream": "downstream", "toxicity": 1}
    call(server, "POST", "/proxies/p/toxics",
         {"type": "timeout", "stream": "UPSTREAM", "toxicity": 0.5})
    names = [t["name"] for t in call(server, "GET", "/proxies/p/toxics")[2]]
    assert names == ["timeout_UPSTREAM", "latency_downstream"]  # upstream chain first
    assert call(server, "GET", "/proxies/p")[2]["toxics"][0]["toxicity"] == 0.5
    dup = call(server, "POST", "/proxies/p/toxics", {"type": "latency", "stream": "upstream",
                                                     "name": "latency_downstream"})
    assert dup[:3:2] == (409, {"error": "toxic already exists", "status": 409})


BAD_STREAM = "stream was invalid, can be either upstream or downstream"


@pytest.mark.parametrize("body, message", [
    ({"type": "packet_loss"}, "invalid toxic type"),
    ({}, "invalid toxic type"),
    ({"type": "latency", "stream": "sideways"}, BAD_STREAM),
    ({"type": "latency", "stream": ""}, BAD_STREAM),
    ({"type": "latency", "attributes": {"latency": -5}}, "invalid attribute latency=-5"),
    ({"type": "latency", "attributes": {"latency": 10**12}}, "invalid attribute latency="),
    ({"type": "latency", "attributes": {"latency": "100"}}, "must be an integer"),
    ({"type": "latency", "attributes": {"latency": 100.5}}, "must be an integer"),
    ({"type": "bandwidth", "attributes": {"rate": -1}}, "invalid attribute rate=-1"),
    ({"type": "limit_data", "attributes": {"bytes": -1}}, "invalid attribute bytes=-1"),
    ({"type": "slicer", "attributes": {"average_size": 0}}, "average_size"),
    ({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 10}},
     "size_variation"),
    ({"type": "latency", "toxicity": 2}, "invalid toxicity"),
    ({"type": "latency", "toxicity": -0.1}, "invalid toxicity"),
    ({"type": "latency", "toxicity": "x"}, "toxicity must be a number"),
    ({"type": "latency", "attributes": [1]}, "attributes must be a JSON object"),
])
def test_bad_toxic_400(server, echo, body, message):
    make(server, echo)
    status, _, err = call(server, "POST", "/proxies/p/toxics", body)
    assert status == 400 and err["status"] == 400 and message in err["error"], err
    assert call(server, "GET", "/proxies/p/toxics")[2] == []


def test_bad_json_and_empty_body_400(server, echo):
    assert call(server, "POST", "/proxies", raw=b"")[2] == {
        "error": "bad request body: EOF", "status": 400}
    status, _, err = call(server, "POST", "/proxies", raw=b"{not json")
    assert status == 400 and err["error"].startswith("bad request body:")
    assert call(server, "POST", "/proxies", raw=b"[1, 2]")[0] == 400
    # lenient like Go: unknown fields ignored, trailing garbage ignored
    raw = b'{"name":"p","upstream":"%s","listen":"127.0.0.1:0","x":1} trailing'
    status, _, proxy = call(server, "POST", "/proxies", raw=raw % str(echo.addr).encode())
    assert status == 201 and proxy["name"] == "p"
    assert call(server, "GET", "/version")[0] == 200


def test_unknown_path_404_wrong_method_405_browser_403(server):
    status, _, body = call(server, "GET", "/nope")
    assert (status, body) == (404, "404 page not found\n")
    assert call(server, "GET", "/proxies/")[0] == 404
    assert call(server, "GET", "/proxies/a/b")[0] == 404
    status, _, body = call(server, "PUT", "/proxies")
    assert (status, body) == (405, "")
    assert call(server, "GET", "/reset")[0] == 405
    status, _, body = call(server, "GET", "/version", headers={"User-Agent": "Mozilla/5.0"})
    assert (status, body) == (403, "User agent not allowed")


def test_update_proxy_patch_and_post(server, echo):
    make(server, echo)
    status, _, proxy = call(server, "PATCH", "/proxies/p", {"enabled": False})
    assert status == 200 and proxy["enabled"] is False
    status, _, proxy = call(server, "POST", "/proxies/p", {"enabled": True, "name": "ignored"})
    assert status == 200 and proxy["enabled"] is True and proxy["name"] == "p"
    status, _, err = call(server, "POST", "/proxies/p", {"enabled": "yes"})
    assert status == 400


def test_update_toxic_merges_attributes(server, echo):
    make(server, echo)
    call(server, "POST", "/proxies/p/toxics", {"type": "latency", "name": "l",
                                                "attributes": {"latency": 10, "jitter": 2}})
    status, _, toxic = call(server, "PATCH", "/proxies/p/toxics/l",
                            {"attributes": {"latency": 50}, "type": "timeout"})
    assert status == 200 and toxic["attributes"] == {"latency": 50, "jitter": 2}
    assert toxic["type"] == "latency" and toxic["toxicity"] == 1
    status, _, err = call(server, "POST", "/proxies/p/toxics/l", {"attributes": {"jitter": -1}})
    assert status == 400
    assert call(server, "GET", "/proxies/p/toxics/l")[2]["attributes"]["jitter"] == 2


def test_delete_and_reset_204(server, echo):
    make(server, echo)
    call(server, "POST", "/proxies/p/toxics", {"type": "latency"})
    call(server, "POST", "/proxies/p", {"enabled": False})
    status, _, body = call(server, "POST", "/reset", raw=b"ignored")
    assert (status, body) == (204, "")
    proxy = call(server, "GET", "/proxies/p")[2]
    assert proxy["enabled"] is True and proxy["toxics"] == []
    assert call(server, "DELETE", "/proxies/p/toxics/latency_downstream")[0] == 404
    assert call(server, "DELETE", "/proxies/p")[0] == 204
    assert call(server, "GET", "/proxies/p")[0] == 404


def test_populate(server, echo):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    entries = [{"name": "a", "upstream": str(echo.addr), "listen": f"127.0.0.1:{port}"},
               {"name": "b", "upstream": str(echo.addr), "listen": "127.0.0.1:0", "enabled": False}]
    status, _, body = call(server, "POST", "/populate", entries)
    assert status == 201 and [p["name"] for p in body["proxies"]] == ["a", "b"]
    assert body["proxies"][1]["enabled"] is False
    call(server, "POST", "/proxies/a/toxics", {"type": "latency"})
    # same listen+upstream: kept untouched (toxics stay); port 0 always re-created
    status, _, body = call(server, "POST", "/populate", entries)
    assert status == 201 and len(body["proxies"][0]["toxics"]) == 1
    assert call(server, "POST", "/populate", [])[2] == {"proxies": None}
    # validation first: nothing created
    status, _, err = call(server, "POST", "/populate",
                          [{"name": "c", "upstream": "x:1"}, {"name": "d"}])
    assert (status, err["error"]) == (400, "missing required field: upstream at proxy 2")
    assert call(server, "GET", "/proxies/c")[0] == 404
    assert call(server, "POST", "/populate", {"name": "x"})[0] == 400


def test_populate_failure_midway_reports_created(server, echo):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status, headers, body = call(server, "POST", "/populate", [
            {"name": "ok", "upstream": str(echo.addr), "listen": "127.0.0.1:0"},
            {"name": "bad", "upstream": str(echo.addr), "listen": f"127.0.0.1:{port}"}])
    assert status == 500 and "address already in use" in body["error"]
    assert headers["Content-Type"] == "application/json"
    assert [p["name"] for p in body["proxies"]] == ["ok"]


def test_garbage_and_keepalive_do_not_kill_server(server):
    for junk in (b"\x00\x01\x02garbage\r\n\r\n", b"GET\r\n\r\n",
                 b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
                 b"POST /proxies HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
                 b"GET /version HTTP/1.1\r\n"):
        with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.recv(4096)
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=5)
    for _ in range(3):  # keep-alive: several requests on one connection
        conn.request("GET", "/version")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"version": "2.12.0"}
    conn.close()


def test_expect_100_continue_and_chunked_bodies(server, echo):
    body = json.dumps({"name": "p", "upstream": str(echo.addr), "listen": "127.0.0.1:0"}).encode()
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as s:
        s.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert s.recv(4096).startswith(b"HTTP/1.1 201 Created")
    call(server, "DELETE", "/proxies/p")
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as s:
        s.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked)
        assert s.recv(4096).startswith(b"HTTP/1.1 201 Created")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
toxic_bodies = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["latency", "bandwidth", "slow_close", "timeout", "reset_peer",
                             "slicer", "limit_data", "noop", "bogus"]) | json_values,
    "stream": st.sampled_from(["upstream", "downstream", "UP"]) | json_values,
    "name": st.text(max_size=5) | json_values,
    "toxicity": st.floats(-1, 2) | json_values,
    "attributes": st.dictionaries(st.sampled_from(["latency", "jitter", "rate", "delay", "timeout",
                                                   "bytes", "average_size", "size_variation"]),
                                  st.integers(-10, 2**64) | json_values, max_size=4) | json_values,
})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=toxic_bodies | json_values)
def test_fuzzed_toxic_bodies_get_200_or_4xx(server, echo, body):
    proxies = call(server, "GET", "/proxies")[2]
    if "f" not in proxies:
        make(server, echo, "f")
    status, _, answer = call(server, "POST", "/proxies/f/toxics", body)
    assert status in (200, 400, 409), (status, answer)
    if status == 200:
        call(server, "DELETE", "/proxies/f/toxics/" + quote(answer["name"], safe=""))
    else:
        assert answer["status"] == status and answer["error"]
    status, _, answer = call(server, "PATCH", "/proxies/f", body)
    assert status in (200, 400, 500), (status, answer)
    call(server, "DELETE", "/proxies/f")
    assert call(server, "GET", "/version")[0] == 200
