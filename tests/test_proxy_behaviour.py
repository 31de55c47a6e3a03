"""What toxics do to real TCP connections through the embedded proxy (127.0.0.1, real sockets).

Timing assertions use generous upper bounds: the test machine is shared and loaded.
"""
from __future__ import annotations

import socket
import time

import pytest

from chaos.net.client import ProxyClient
from chaos.net.echo import EchoServer
from chaos.net.proxy import ServerThread
from tests.conftest import wait_for

SLACK = 0.25  # seconds of scheduling noise we tolerate above a configured delay


@pytest.fixture(scope="module")
def server():
    srv = ServerThread(port=0, seed=1).start()
    yield srv
    srv.stop()


@pytest.fixture
def echo():
    with EchoServer() as e:
        yield e


@pytest.fixture
def api(server):
    client = ProxyClient(server.url)
    yield client
    for name in client.proxies():
        client.delete_proxy(name)


def open_proxy(api, echo, name="p", enabled=True):
    proxy = api.create_proxy(name, str(echo.addr), "127.0.0.1:0", enabled)
    return proxy


def dial(proxy, timeout=5.0):
    host, port = proxy["listen"].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def roundtrip(sock, payload=b"ping"):
    start = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        got += chunk
    assert got == payload
    return time.monotonic() - start


def closed_within(sock, seconds):
    """True when the peer closes (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_passthrough_and_dial_failure(api, echo):
    proxy = open_proxy(api, echo)
    with dial(proxy) as s:
        assert roundtrip(s, b"x" * 100_000) < 2
    api.update_proxy("p", upstream="127.0.0.1:1")  # nothing listens there
    with dial(api.get_proxy("p")) as s:
        assert closed_within(s, 3)  # connect succeeded, then EOF (Toxiproxy #265)


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_latency_per_direction_on_a_live_connection(api, echo, stream):
    proxy = open_proxy(api, echo)
    with dial(proxy) as s:
        base = roundtrip(s)
        api.add_toxic("p", "latency", stream, attributes={"latency": 200})
        slow = roundtrip(s)  # the open connection's next bytes are delayed
        assert 0.19 <= slow < base + 0.2 + SLACK, (base, slow)
        api.add_toxic("p", "latency", "upstream" if stream == "downstream" else "downstream",
                      attributes={"latency": 100})
        both = roundtrip(s)
        assert 0.29 <= both < base + 0.3 + SLACK
        api.delete_toxic("p", f"latency_{stream}")
        assert roundtrip(s) < base + 0.1 + SLACK


def test_latency_shifts_not_throttles(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "latency", "upstream", attributes={"latency": 150})
    with dial(proxy) as s:
        start = time.monotonic()
        for _ in range(5):  # five writes 20 ms apart, all shifted by ~150 ms, not 5 x 150
            s.sendall(b"a")
            time.sleep(0.02)  # spaces the writes on purpose
        got = b""
        while len(got) < 5:
            got += s.recv(10)
        assert time.monotonic() - start < 0.15 + 0.1 + SLACK


def test_removing_latency_releases_held_data(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "latency", "upstream", attributes={"latency": 10_000})
    with dial(proxy) as s:
        s.sendall(b"held")
        wait_for(lambda: api.get_proxy("p")["chaos_traffic"]["upstream_bytes"] >= 4, 5,
                 "the proxy to hold the bytes")
        start = time.monotonic()
        api.delete_toxic("p", "latency_upstream")
        s.settimeout(3)
        assert s.recv(10) == b"held"
        assert time.monotonic() - start < 1


def test_timeout_zero_blackholes_and_removal_closes(api, echo):
    proxy = open_proxy(api, echo)
    with dial(proxy) as s:
        roundtrip(s)
        api.add_toxic("p", "timeout", "upstream", attributes={"timeout": 0})
        before = echo.received
        s.sendall(b"lost")
        s.settimeout(0.6)
        with pytest.raises(socket.timeout):
            s.recv(10)  # no reply, and the connection stays open
        assert echo.received == before
        api.delete_toxic("p", "timeout_upstream")
        assert closed_within(s, 3)  # healing a blackhole closes (as upstream does)
    with dial(proxy) as s:
        roundtrip(s)


def test_timeout_positive_closes_after_delay(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "timeout", "downstream", attributes={"timeout": 300})
    with dial(proxy) as s:
        start = time.monotonic()
        assert closed_within(s, 3)
        assert 0.28 <= time.monotonic() - start < 0.3 + SLACK


def test_disable_refuses_new_and_closes_existing(api, echo):
    proxy = open_proxy(api, echo)
    live = dial(proxy)
    roundtrip(live)
    api.disable("p")
    assert closed_within(live, 2)
    live.close()
    with pytest.raises(ConnectionRefusedError):
        dial(proxy)
    api.enable("p")  # re-binds the same port
    assert api.get_proxy("p")["listen"] == proxy["listen"]
    with dial(proxy) as s:
        roundtrip(s)


def test_changing_upstream_moves_new_connections_and_closes_old(api, echo):
    proxy = open_proxy(api, echo)
    with EchoServer() as other:
        live = dial(proxy)
        roundtrip(live)
        api.add_toxic("p", "latency", "upstream", attributes={"latency": 1})
        moved = api.update_proxy("p", upstream=str(other.addr))
        assert moved["listen"] == proxy["listen"] and len(moved["toxics"]) == 1  # toxics kept
        assert closed_within(live, 2)
        live.close()
        before = other.received
        with dial(proxy) as s:
            roundtrip(s)
        assert other.received == before + 4


def test_localhost_listen_binds_ipv4(api, echo):
    proxy = api.create_proxy("p", str(echo.addr), listen="localhost:0")
    assert proxy["listen"].startswith("127.0.0.1:")


def test_limit_data_cuts_after_n_bytes(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "limit_data", "downstream", attributes={"bytes": 1000})
    with dial(proxy) as s:
        s.sendall(b"z" * 5000)
        got = b""
        s.settimeout(3)
        while chunk := s.recv(65536):
            got += chunk
        assert got == b"z" * 1000


def test_bandwidth_limits_rate(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "bandwidth", "downstream", attributes={"rate": 200})  # 200 KB/s
    with dial(proxy, timeout=10) as s:
        elapsed = roundtrip(s, b"b" * 100_000)  # 100 KB at 200 KB/s: ~0.5 s
        assert 0.4 <= elapsed < 0.5 + 1.0, elapsed
    api.update_toxic("p", "bandwidth_downstream", {"rate": 0})  # 0 = unlimited, as upstream
    with dial(proxy) as s:
        assert roundtrip(s, b"b" * 100_000) < 0.4


def test_reset_peer_sends_rst(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "reset_peer", "upstream", attributes={"timeout": 100})
    with dial(proxy) as s:
        s.sendall(b"x")
        s.settimeout(3)
        with pytest.raises(ConnectionResetError):
            s.recv(10)
            s.recv(10)


def test_slow_close_holds_the_close(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "slow_close", "upstream", attributes={"delay": 300})
    with dial(proxy) as s:
        roundtrip(s)
        start = time.monotonic()
        s.shutdown(socket.SHUT_WR)
        assert closed_within(s, 3)
        assert time.monotonic() - start >= 0.28


def test_slicer_keeps_data_intact(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "slicer", "downstream",
                  attributes={"average_size": 7, "size_variation": 3, "delay": 10})
    with dial(proxy) as s:
        payload = bytes(range(256)) * 4
        assert roundtrip(s, payload) < 3


def test_toxicity_zero_never_applies(api, echo):
    proxy = open_proxy(api, echo)
    api.add_toxic("p", "timeout", "upstream", toxicity=0.0, attributes={"timeout": 0})
    for _ in range(3):
        with dial(proxy) as s:
            roundtrip(s)


def test_toxics_before_enable_catch_every_connection(api, echo):
    proxy = open_proxy(api, echo, enabled=False)
    api.add_toxic("p", "latency", "downstream", attributes={"latency": 150})
    proxy = api.enable("p")
    with dial(proxy) as s:
        assert roundtrip(s) >= 0.14


def test_shutdown_closes_listeners_and_connections(echo):
    srv = ServerThread(port=0).start()
    try:
        api = ProxyClient(srv.url)
        proxy = api.create_proxy("p", str(echo.addr))
        live = dial(proxy)
        roundtrip(live)
    finally:
        srv.stop()
    assert closed_within(live, 3)
    live.close()
    with pytest.raises(ConnectionRefusedError):
        dial(proxy)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.server.port), timeout=2)
