"""MCP in stateful mode: the asynchronous tool set, sessions by header, over real transports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.web._server import Server, serve, storage_args

pytestmark = [pytest.mark.deno, pytest.mark.anyio]

STATEFUL_TOOLS = {
    "run_js",
    "get_execution",
    "get_execution_output",
    "cancel_execution",
    "list_executions",
    "list_sessions",
    "list_session_snapshots",
    "get_heap_tags",
    "set_heap_tags",
    "delete_heap_tags",
    "query_heaps_by_tags",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("mcp-stateful") / "data", stateful=True) as running:
        yield running


async def tool(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    content: dict[str, Any] = result.structured_content
    return content


async def finished(client: Client, execution_id: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            record = await tool(client, "get_execution", execution_id=execution_id)
            if record["status"] not in ("queued", "running"):
                return record
            await anyio.sleep(0.02)


async def test_state_carries_over_through_heaps_and_sessions_come_from_the_header(
    server: Server,
) -> None:
    headers = {"X-MCP-Session-Id": "agent-1"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == STATEFUL_TOOLS
        started = await tool(
            client, "run_js", code="console.log('hi'); var x = 20", tags={"k": "v"}
        )
        first = await finished(client, started["execution_id"])
        assert first["status"] == "completed" and first["heap"]
        output = await tool(client, "get_execution_output", execution_id=first["execution_id"])
        assert output["data"] == "hi\n"
        started = await tool(client, "run_js", code="x * 2 + 2", heap=first["heap"])
        second = await finished(client, started["execution_id"])
        assert second["result"] == "42"
        log = await tool(client, "list_session_snapshots", session="agent-1", fields="index")
        assert log["snapshots"] == [{"index": 1}, {"index": 2}]
        assert "agent-1" in (await tool(client, "list_sessions"))["sessions"]
        tags = await tool(client, "get_heap_tags", heap=first["heap"])
        assert tags["tags"] == {"k": "v"}
        found = await tool(client, "query_heaps_by_tags", tags={"k": "v"})
        assert first["heap"] in found["heaps"]


async def test_errors_are_tool_errors_naming_the_problem(server: Server) -> None:
    async with (
        httpx2.AsyncClient(timeout=60) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client,
    ):
        missing = await client.call_tool("run_js", {"code": "1", "heap": "0" * 64})
        assert missing.is_error and "heap not found" in missing.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool("get_execution", {"execution_id": "nope"})
        assert bad.is_error and "nope" in bad.content[0].text  # type: ignore[union-attr]


async def test_stdio_sessions_come_from_the_session_id_flag(tmp_path: Path) -> None:
    data = tmp_path / "data"
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "supervisor",
            *storage_args(data, stateful=True),
            "--data-dir",
            str(data),
            "--session-id",
            "ide",
        ],
        cwd=str(Path(__file__).resolve().parents[2]),
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    async with Client(params) as client:
        started = await tool(client, "run_js", code="1")
        await finished(client, started["execution_id"])
        log = await tool(client, "list_session_snapshots", session="ide")
        assert len(log["snapshots"]) == 1
