"""Serving: stdio MCP, or Hypercorn with MCP (Streamable HTTP or SSE) beside REST."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager, nullcontext

import anyio
from hypercorn.asyncio import serve
from hypercorn.config import Config
from mcp.server.transport_security import TransportSecuritySettings

from supervisor.app import Services
from supervisor.web.guard import ASGIApp, Guard, Receive, Scope, Send, allowed_host_set
from supervisor.web.mcp_tools import create_mcp_server
from supervisor.web.rest import create_rest_app

logger = logging.getLogger(__name__)

# Host/Origin checks are done by our Guard for every route, so the SDK's own are off.
_NO_SDK_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


class _Router:
    """MCP paths to the MCP app, everything else (and lifespan) to Quart."""

    def __init__(self, mcp_app: ASGIApp, mcp_paths: tuple[str, ...], rest_app: ASGIApp) -> None:
        self.mcp_app = mcp_app
        self.mcp_paths = mcp_paths
        self.rest_app = rest_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") in self.mcp_paths:
            await self.mcp_app(scope, receive, send)
        else:
            await self.rest_app(scope, receive, send)


async def serve_stdio(services: Services) -> None:
    """MCP over this process's stdin/stdout (what IDEs launch)."""
    await create_mcp_server(services).run_stdio_async()


def build_http_app(services: Services) -> tuple[ASGIApp, AbstractAsyncContextManager[object]]:
    """The guarded ASGI app, and what must be entered around serving it.

    The Streamable HTTP session manager needs a running task group; it is
    entered here rather than through ASGI lifespan, which goes to Quart alone.
    """
    http = services.settings.http
    mcp = create_mcp_server(services)
    mcp_app: ASGIApp
    lifetime: AbstractAsyncContextManager[object] = nullcontext()
    if http.sse_port is not None:
        mcp_app = mcp.sse_app(  # type: ignore[assignment]
            sse_path="/sse",
            message_path="/message",
            max_request_body_size=http.max_body_bytes,
            transport_security=_NO_SDK_CHECK,
        )
        paths: tuple[str, ...] = ("/sse", "/message")
    else:
        mcp_app = mcp.streamable_http_app(  # type: ignore[assignment]
            streamable_http_path="/mcp",
            max_request_body_size=http.max_body_bytes,
            transport_security=_NO_SDK_CHECK,
        )
        lifetime = mcp.session_manager.run()
        paths = ("/mcp",)
    rest = create_rest_app(services)
    app = Guard(
        _Router(mcp_app, paths, rest),  # type: ignore[arg-type]
        allowed_hosts=allowed_host_set(http.host, http.allowed_hosts),
        allowed_origins=http.allowed_origins,
        max_body_bytes=http.max_body_bytes,
    )
    return app, lifetime


async def serve_http(services: Services, shutdown: anyio.Event) -> None:
    """Serve MCP and REST on the configured port until ``shutdown`` is set."""
    http = services.settings.http
    port = http.sse_port if http.sse_port is not None else http.http_port
    app, lifetime = build_http_app(services)
    config = Config()
    host = f"[{http.host}]" if ":" in http.host else http.host
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    config.include_server_header = False  # no advertising of the server's software
    async with lifetime:
        await serve(app, config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]
