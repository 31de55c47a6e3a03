"""The real toxiproxy-python client (PyPI 0.1.1) against the embedded server.

toxiproxy-python keeps the server address in class attributes, so the fixture points it at our
server and restores the default afterwards.
"""
from __future__ import annotations

import socket

import pytest
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.net.client import ProxyClient
from chaos.net.echo import EchoServer

TOXICS = [
    ("latency", {"latency": 10, "jitter": 1}),
    ("bandwidth", {"rate": 100}),
    ("slow_close", {"delay": 10}),
    ("timeout", {"timeout": 0}),
    ("reset_peer", {"timeout": 10}),
    ("slicer", {"average_size": 10, "size_variation": 2, "delay": 5}),
    ("limit_data", {"bytes": 100}),
]


@pytest.fixture
def tp(server):
    saved = APIConsumer.host, APIConsumer.port
    toxiproxy = ProxyClient(server.url).toxiproxy()
    yield toxiproxy
    toxiproxy.destroy_all()
    APIConsumer.host, APIConsumer.port = saved


@pytest.fixture(scope="module")
def echo():
    with EchoServer() as e:
        yield e


def test_version_and_running(tp):
    assert tp.running() is True
    assert b"2.12.0" in tp.version()


def test_create_list_destroy(tp, echo):
    proxy = tp.create(upstream=str(echo.addr), name="web")
    assert proxy.enabled is True and proxy.listen.startswith("127.0.0.1:")
    host, port = proxy.listen.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=2).close()
    assert set(tp.proxies()) == {"web"}
    assert tp.get_proxy("web").upstream == str(echo.addr)
    with pytest.raises(ProxyExists):
        tp.create(upstream=str(echo.addr), name="web")
    tp.destroy(proxy)
    assert tp.proxies() == {}
    assert tp.get_proxy("web") is None
    with pytest.raises(NotFound):
        proxy.destroy()


@pytest.mark.parametrize("type_, attributes", TOXICS)
def test_add_and_remove_each_toxic(tp, echo, type_, attributes):
    proxy = tp.create(upstream=str(echo.addr), name="p")
    proxy.add_toxic(type=type_, attributes=attributes, stream="upstream", toxicity=0.5)
    toxics = proxy.toxics()
    name = f"{type_}_upstream"
    assert set(toxics) == {name}
    toxic = proxy.get_toxic(name)
    assert toxic.type == type_ and toxic.stream == "upstream" and toxic.toxicity == 0.5
    assert toxic.attributes == attributes
    with pytest.raises(ProxyExists):  # the client's name for a duplicate toxic
        proxy.add_toxic(type=type_, attributes=attributes, stream="upstream")
    proxy.destroy_toxic(name)
    assert proxy.toxics() == {}


def test_invalid_toxic_raises(tp, echo):
    proxy = tp.create(upstream=str(echo.addr), name="p")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="packet_loss")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", attributes={"latency": -1})


def test_disable_enable_down_and_reset(tp, echo):
    proxy = tp.create(upstream=str(echo.addr), name="p")
    host, port = proxy.listen.rsplit(":", 1)
    proxy.disable()
    assert tp.get_proxy("p").enabled is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2)
    proxy.enable()
    assert tp.get_proxy("p").enabled is True
    with proxy.down():
        assert tp.get_proxy("p").enabled is False
    assert tp.get_proxy("p").enabled is True
    proxy.add_toxic(type="latency", attributes={"latency": 5})
    proxy.disable()
    assert tp.reset() is True
    assert tp.get_proxy("p").enabled is True and proxy.toxics() == {}


def test_client_side_populate(tp, echo):
    created = tp.populate([{"name": "a", "upstream": str(echo.addr), "listen": "127.0.0.1:0"}])
    assert [p.name for p in created] == ["a"]
