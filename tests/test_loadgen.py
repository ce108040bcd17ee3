"""The benchmark's HTTP clients keep going when the server ends a keep-alive connection.

Hypercorn closes a connection after ``keep_alive_max_requests`` responses
(1000 by default), which a throughput run on a larger machine passes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from bench.loadgen import BlockingHttpConnection, HttpConnection
from bench.procs import free_port

pytestmark = pytest.mark.anyio

REQUESTS = 10
PER_CONNECTION = 3


class _Numbered:
    """An ASGI app answering each request with its number, noting which connection asked."""

    def __init__(self) -> None:
        self.served = 0
        self.clients: set[tuple[str, int]] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        self.served += 1
        self.clients.add(tuple(scope["client"]))
        body = json.dumps({"n": self.served}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _serving(app: _Numbered) -> AsyncIterator[int]:
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.keep_alive_max_requests = PER_CONNECTION
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        with anyio.fail_after(10):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    await anyio.sleep(0.02)
        try:
            yield port
        finally:
            stop.set()


async def test_the_asyncio_client_opens_a_new_connection_when_the_server_ends_one() -> None:
    app = _Numbered()
    async with _serving(app) as port:
        connection = await HttpConnection.open("127.0.0.1", port)
        try:
            answers = [await connection.request("GET", "/") for _ in range(REQUESTS)]
        finally:
            await connection.aclose()
    assert answers == [(200, {"n": n}) for n in range(1, REQUESTS + 1)]
    assert len(app.clients) > 1


async def test_the_blocking_client_opens_a_new_connection_when_the_server_ends_one() -> None:
    app = _Numbered()
    async with _serving(app) as port:

        def requests() -> list[tuple[int, dict[str, Any]]]:
            connection = BlockingHttpConnection("127.0.0.1", port)
            try:
                return [connection.request("GET", "/") for _ in range(REQUESTS)]
            finally:
                connection.close()

        answers = await anyio.to_thread.run_sync(requests)
    assert answers == [(200, {"n": n}) for n in range(1, REQUESTS + 1)]
    assert len(app.clients) > 1
