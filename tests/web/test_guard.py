"""The HTTP guard's body handling, against a fake ASGI app (no server, no Deno)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from supervisor.web.guard import Guard

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/exec",
        "headers": [(b"host", b"127.0.0.1:3000"), (b"content-length", b"20")],
    }


async def _call(guard: Guard, chunks: list[Message], then_block: bool) -> list[Message]:
    """Call ``guard`` with a client sending ``chunks`` and then, maybe, nothing ever again."""
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then_block:
            await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await guard(_scope(), receive, send)
    return sent


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


def _guard(body_timeout_s: float) -> Guard:
    return Guard(
        _echo,
        allowed_hosts=frozenset({"127.0.0.1"}),
        allowed_origins=(),
        max_body_bytes=1024,
        body_timeout_s=body_timeout_s,
    )


async def test_a_body_that_stops_arriving_gets_408_at_the_deadline() -> None:
    started = anyio.current_time()
    sent = await _call(
        _guard(0.2), [{"type": "http.request", "body": b'{"code": ', "more_body": True}], True
    )
    assert 0.2 <= anyio.current_time() - started < 2
    assert sent[0]["status"] == 408
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "request_timeout"
    assert "did not arrive within 0.2 s" in error["message"]


async def test_a_body_in_pieces_within_the_deadline_reaches_the_app_whole() -> None:
    pieces = [b'{"code": ', b'"1 + 1"', b"}"]
    chunks = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent = await _call(_guard(5), chunks, False)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"code": "1 + 1"}'
