"""MCP over every transport, driven by the MCP SDK's own client against the real server."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from supervisor.config import CapabilitySettings, ModuleSettings
from supervisor.web.mcp_tools import what_code_can_use
from tests.conftest import start_engine
from tests.web._server import Server, serve

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

Connect = Callable[[], AbstractAsyncContextManager[Client]]


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("mcp-http") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("mcp-sse") / "data", transport="--sse-port") as running:
        yield running


# The SDK's SSE client leaves its socket to the garbage collector when a session ends.
_SDK_SSE_LEAK = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(params=["stdio", "streamable-http", pytest.param("sse", marks=_SDK_SSE_LEAK)])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Connect:
    transport: str = request.param
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "supervisor", "--stateless", "--data-dir", str(tmp_path / "data")],
            cwd=str(Path(__file__).resolve().parents[2]),
            env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )
        return lambda: Client(params)
    if transport == "streamable-http":
        server: Server = request.getfixturevalue("http_server")
        url = f"{server.url}/mcp"

        @asynccontextmanager
        async def over_http() -> AsyncIterator[Client]:
            async with (
                httpx2.AsyncClient(timeout=60) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                yield client

        return over_http
    server = request.getfixturevalue("sse_server")
    return lambda: Client(sse_client(f"{server.url}/sse", timeout=60))


@pytest.fixture
async def client(connect: Connect) -> AsyncIterator[Client]:
    async with connect() as session:
        yield session


async def call(client: Client, **arguments: Any) -> tuple[bool, dict[str, Any]]:
    result = await client.call_tool("run_js", arguments)
    assert result.structured_content is not None, result.content
    return bool(result.is_error), result.structured_content


async def test_run_js_is_listed_with_a_description_and_an_output_schema(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    run_js = tools["run_js"]
    assert run_js.description and "REPL" in run_js.description
    assert run_js.output_schema is not None
    assert {"output", "result", "error", "status"} <= set(run_js.output_schema["properties"])
    assert run_js.input_schema["required"] == ["code"]
    # What this server grants: nothing beyond the defaults here.
    assert "TypeScript" in run_js.description
    assert "No npm:, jsr: or URL imports" in run_js.description
    assert "fetch(" not in run_js.description


async def test_the_description_names_the_capabilities_a_server_grants(tmp_path: Path) -> None:
    policy = tmp_path / "fetch.rego"
    policy.write_text("package mcp.fetch\n\ndefault allow := false\n")
    async with start_engine(
        tmp_path / "data",
        capabilities=CapabilitySettings(
            policies_json=json.dumps({"fetch": {"policies": [{"url": policy.as_uri()}]}})
        ),
        modules=ModuleSettings(enabled=True, cache_dir=tmp_path / "modules"),
    ) as services:
        note = what_code_can_use(services)
    assert "fetch(url, init)" in note
    assert "fs.readFile" not in note
    assert 'import _ from "npm:lodash-es@4.17.21"' in note


async def test_run_js_returns_output_and_the_completion_value(client: Client) -> None:
    is_error, data = await call(client, code="console.log('hello'); console.warn('w'); 6 * 7")
    assert not is_error
    assert data["status"] == "completed"
    assert data["result"] == "42"
    assert data["output"] == "hello\n[WARN] w\n"


async def test_run_js_reports_a_thrown_error_as_an_error_result(client: Client) -> None:
    is_error, data = await call(client, code="console.log('before');\nthrow new RangeError('nope')")
    assert is_error
    assert data["status"] == "failed"
    assert data["output"] == "before\n"
    assert data["error"].startswith("RangeError: nope")
    assert "code.js:2:" in data["error"]


async def test_run_js_reports_a_timeout(client: Client) -> None:
    is_error, data = await call(client, code="while (true) {}", execution_timeout_secs=1)
    assert is_error
    assert data["status"] == "timed_out"


async def test_out_of_range_limits_are_refused_with_an_error_result(client: Client) -> None:
    result = await client.call_tool("run_js", {"code": "1", "execution_timeout_secs": 1000})
    assert result.is_error
    assert "execution_timeout_secs" in result.content[0].text  # type: ignore[union-attr]
    is_error, data = await call(client, code="1 + 1")
    assert not is_error and data["result"] == "2"
