"""The client layer (errors, updates, backend choice) and the standalone server commands."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from chaos.errors import ExitCode, SetupError
from chaos.net.client import ProxyClient, ProxyError, connect_or_start, parse_version
from chaos.net.echo import EchoServer
from chaos.runtime.local import free_port
from tests.conftest import REPO


def test_errors_carry_status_and_message(server):
    api = ProxyClient(server.url, timeout=5)
    with EchoServer() as echo:
        api.create_proxy("p", str(echo.addr))
        try:
            with pytest.raises(ProxyError) as dup:
                api.create_proxy("p", str(echo.addr))
            assert dup.value.status == 409 and dup.value.message == "proxy already exists"
            assert isinstance(dup.value, SetupError) and dup.value.exit_code == ExitCode.SETUP
            with pytest.raises(ProxyError) as missing:
                api.get_proxy("nope")
            assert missing.value.status == 404
            api.delete_proxy("nope", missing_ok=True)
            with pytest.raises(ProxyError) as bad:
                api.add_toxic("p", "nonsense")
            assert (bad.value.status, bad.value.message) == (400, "invalid toxic type")
            listen = api.get_proxy("p")["listen"]
            with pytest.raises(ProxyError) as busy:  # toxiproxy-python gives KeyError here
                api.create_proxy("q", str(echo.addr), listen=listen)
            assert busy.value.status == 500 and "address already in use" in busy.value.message
        finally:
            api.delete_proxy("p")


def test_toxic_update_and_names_with_arrows(server):
    api = ProxyClient(server.url)
    api.create_proxy("n1->n2", "127.0.0.1:1", enabled=False)
    try:
        api.add_toxic("n1->n2", "latency", "upstream", name="lat", attributes={"latency": 10})
        toxic = api.update_toxic("n1->n2", "lat", {"jitter": 3}, toxicity=0.5)
        assert toxic["attributes"] == {"latency": 10, "jitter": 3} and toxic["toxicity"] == 0.5
        assert [t["name"] for t in api.toxics("n1->n2")] == ["lat"]
        api.delete_toxic("n1->n2", "lat")
        api.delete_toxic("n1->n2", "lat", missing_ok=True)
    finally:
        api.delete_proxy("n1->n2")


def test_unreachable_server_is_status_0():
    api = ProxyClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(ProxyError) as exc:
        api.proxies()
    assert exc.value.status == 0 and "cannot reach" in str(exc.value)


@pytest.mark.parametrize("body, version", [
    (b"2.4.0", "2.4.0"), (b'{"version": "2.6.0"}\\n', "2.6.0"),
    (b'{"version": "2.12.0"}\n', "2.12.0"),
])
def test_parse_version_tolerates_old_servers(body, version):
    assert parse_version(body) == version


def test_connect_or_start_uses_a_server_that_answers(server, monkeypatch):
    monkeypatch.setenv("TOXIPROXY_URL", server.url)
    client = connect_or_start()
    assert client.url == server.url and not client.embedded
    client.close()
    assert ProxyClient().url == server.url  # TOXIPROXY_URL is the default everywhere


@pytest.mark.parametrize("mode", ["thread", "subprocess"])
def test_connect_or_start_starts_embedded_and_close_stops_it(monkeypatch, mode):
    monkeypatch.setenv("TOXIPROXY_URL", f"http://127.0.0.1:{free_port()}")
    client = connect_or_start(probe_timeout=0.5, embedded=mode)
    assert client.embedded and client.version() == "2.12.0"
    with EchoServer() as echo:
        proxy = client.create_proxy("p", str(echo.addr))
        host, port = proxy["listen"].rsplit(":", 1)
        client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2)
    with pytest.raises(ProxyError):
        client.version()
    client.close()  # idempotent


def _wait_version(url: str, proc: subprocess.Popen, deadline: float = 20) -> dict:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with urllib.request.urlopen(url + "/version", timeout=1) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


@pytest.mark.parametrize("argv", [
    [sys.executable, "-S", "-m", "chaos.net.proxy"],  # -S: no site-packages, stdlib only
    [sys.executable, "-m", "chaos", "proxy", "serve"],
])
def test_standalone_server_serves_and_stops_on_sigterm(argv):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv + ["--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_version(f"http://127.0.0.1:{port}", proc) == {"version": "2.12.0"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_serve_on_busy_port_exits_3():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "chaos", "proxy", "serve", "--port", str(port)]
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == ExitCode.SETUP
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_bad_port_is_bad_input(capsys):
    from chaos.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["proxy", "serve", "--port", "99999"])
    assert exc.value.code == ExitCode.BAD_INPUT
    assert "--port" in capsys.readouterr().err
