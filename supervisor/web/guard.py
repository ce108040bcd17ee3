"""ASGI guard in front of every HTTP route: Host/Origin checks, a body-size cap
and a deadline for the body to arrive.

The MCP specification asks HTTP servers to validate ``Origin`` (DNS rebinding);
we check ``Host`` as well, for MCP and REST alike, in one place rather than
trusting each library's default. Bodies are read here, whole, before the app
sees the request: a client that sends more than the cap gets 413, one that
sends its body too slowly (holding a connection open byte by byte) gets 408.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_WILDCARD_BINDS = ("0.0.0.0", "::", "")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# How long a request body may take to arrive, once the headers have.
BODY_TIMEOUT_S = 30.0


def hostname(value: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:80`` -> ``::1``; lowercased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def allowed_host_set(bind_host: str, extra: Iterable[str]) -> frozenset[str] | None:
    """Host names requests may name: loopback, the bind address, and ``extra``.

    ``*`` in ``extra`` turns the check off (returns None).
    """
    names = {hostname(h) for h in extra}
    if "*" in names:
        return None
    names.update(LOOPBACK_HOSTS)
    if bind_host not in _WILDCARD_BINDS:
        names.add(hostname(bind_host))
    return frozenset(names)


class Guard:
    """Wraps an ASGI app; rejects foreign Host/Origin (403), oversized bodies (413)
    and bodies that do not arrive within ``body_timeout_s`` (408)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: frozenset[str] | None,
        allowed_origins: Iterable[str],
        max_body_bytes: int,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check_origin(headers)
        if problem:
            await _reply(send, 403, "forbidden", problem)
            return
        if scope["method"] in _BODY_METHODS:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _reply(send, 413, "payload_too_large", self._too_large())
                return
            body: bytes | None = b""
            with anyio.move_on_after(self.body_timeout_s) as deadline:
                body = await _read_body(receive, self.max_body_bytes)
            if deadline.cancelled_caught:
                message = f"the request body did not arrive within {self.body_timeout_s:g} s"
                await _reply(send, 408, "request_timeout", message)
                return
            if body is None:
                await _reply(send, 413, "payload_too_large", self._too_large())
                return
            receive = replaying({"type": "http.request", "body": body, "more_body": False}, receive)
        await self.app(scope, receive, send)

    def _too_large(self) -> str:
        return f"request body is over the {self.max_body_bytes}-byte limit"

    def _check_origin(self, headers: dict[str, str]) -> str | None:
        host = headers.get("host")
        if self.allowed_hosts is not None:
            if not host:
                return "missing Host header"
            if hostname(host) not in self.allowed_hosts:
                return f"Host {host!r} is not allowed (see --allowed-host)"
        origin = headers.get("origin")
        if origin is None:
            return None
        origin_key = origin.rstrip("/").lower()
        if origin_key in self.allowed_origins:
            return None
        parts = urlsplit(origin_key)
        if parts.scheme in ("http", "https") and parts.hostname is not None:
            name = parts.hostname
            if self.allowed_hosts is None or name in self.allowed_hosts:
                return None
        return f"Origin {origin!r} is not allowed (see --allowed-origin)"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that returns ``first`` (already taken from ``receive``), then the rest."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
