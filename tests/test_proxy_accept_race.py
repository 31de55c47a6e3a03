"""Closing a proxy listener while a connection is ready to accept (a partition disabling a
proxy as a client connects) must not log asyncio's "InvalidStateError: invalid state"
traceback nor leak the connection (finding 20: CPython 3.11's sock_accept sets the result
of a future cancelled in the same loop iteration)."""
from __future__ import annotations

import asyncio
import socket

from chaos.net.proxy.accept import Listener


def test_close_with_a_connection_ready_to_accept_logs_nothing():
    errors: list[dict] = []
    accepted: list[socket.socket] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        for _ in range(20):  # the race is exact, but repeat to cover both paths
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(8)
            listener = Listener(srv, accepted.append)
            await asyncio.sleep(0.01)  # the accept task waits, its reader is registered
            client = socket.create_connection(srv.getsockname())  # now readable
            loop.call_soon(listener.close)  # runs in the iteration that sees it readable
            await asyncio.sleep(0.01)
            await listener.wait_closed()
            client.close()
        for conn in accepted:
            conn.close()

    asyncio.run(main())
    assert not errors, [str(e.get("exception") or e.get("message")) for e in errors]
