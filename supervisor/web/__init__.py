"""The edges that speak to clients: REST (Quart), MCP (stdio, Streamable HTTP, SSE)."""

from supervisor.web.mcp_tools import create_mcp_server
from supervisor.web.rest import create_rest_app
from supervisor.web.server import build_http_app, serve_http, serve_stdio

__all__ = ["build_http_app", "create_mcp_server", "create_rest_app", "serve_http", "serve_stdio"]
