"""How the REST app handles a request in the server's task (supervisor/web/connection.py):
clients that leave a long-poll, bodies that arrive in parts, clients that stop reading.

The Quart app is called directly through ASGI, over the real engine and real Deno.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import anyio
import pytest

from supervisor.app import Services
from supervisor.web.guard import ASGIApp, Receive
from supervisor.web.rest import create_rest_app
from tests.conftest import submit

pytestmark = [pytest.mark.anyio, pytest.mark.deno]

Message = dict[str, Any]


def _scope(method: str, path: str, query: bytes = b"") -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
        "extensions": {},
    }


def _app(services: Services, **config: Any) -> ASGIApp:
    app = create_rest_app(services)
    app.config.update(config)
    return cast(ASGIApp, app)


def _client(*messages: Message, then_leave_after: float | None = None) -> Receive:
    """What a client sends: ``messages``, then nothing more (or, after a while, it leaves)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then_leave_after is None:
            await anyio.sleep_forever()
        await anyio.sleep(then_leave_after or 0)
        return {"type": "http.disconnect"}

    return receive


NO_BODY: Message = {"type": "http.request", "body": b"", "more_body": False}


def _json_body(sent: list[Message]) -> Any:
    return json.loads(b"".join(m.get("body", b"") for m in sent if m["type"].endswith("body")))


async def test_a_client_leaving_a_long_poll_ends_the_request_at_once(services: Services) -> None:
    record = await submit(services, "await new Promise(() => {})", execution_timeout_secs=60)
    app = _app(services)
    receive = _client(NO_BODY, then_leave_after=0.3)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        started = time.monotonic()
        with anyio.fail_after(10):
            scope = _scope("GET", f"/api/executions/{record.execution_id}", b"wait=60")
            await app(scope, receive, send)
        assert time.monotonic() - started < 5, "the long-poll outlived its client"
        assert sent == []
        # The execution is unaffected; only the waiting request ended.
        assert (await services.engine.get(record.execution_id)).status.value == "running"
    finally:
        await services.engine.cancel(record.execution_id)


async def test_a_body_in_several_parts_is_read_whole(services: Services) -> None:
    """Without the guard in front, a body may come in parts: Quart's own way reads them."""
    app = _app(services)
    body = json.dumps({"code": "6 * 7"}).encode()
    receive = _client(
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await app(_scope("POST", "/api/exec"), receive, send)
    assert sent[0]["status"] == 200
    final = await services.engine.wait(_json_body(sent)["execution_id"], 30)
    assert final.result == "42"


async def test_a_client_that_stops_reading_does_not_hold_the_request(services: Services) -> None:
    app = _app(services, RESPONSE_TIMEOUT=0.2)

    async def send(message: Message) -> None:
        await anyio.sleep_forever()  # the socket's buffer is full: nothing can be sent

    started = time.monotonic()
    with anyio.fail_after(10):
        await app(_scope("GET", "/api/executions", b"limit=1"), _client(NO_BODY), send)
    assert time.monotonic() - started < 5


async def test_requests_are_answered_in_order_on_one_app(services: Services) -> None:
    """A plain GET and a long-poll that ends with the execution, back to back."""
    app = _app(services)
    record = await submit(services, "await new Promise(r => setTimeout(r, 200)); 'late'")

    async def call(method: str, path: str, query: bytes = b"") -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        with anyio.fail_after(30):
            await app(_scope(method, path, query), _client(NO_BODY), send)
        return sent

    waited = await call("GET", f"/api/executions/{record.execution_id}", b"wait=20")
    assert waited[0]["status"] == 200
    assert _json_body(waited)["result"] == "late"
    missing = await call("GET", "/api/executions/nope")
    assert missing[0]["status"] == 404
    assert _json_body(missing)["error"]["code"] == "not_found"
