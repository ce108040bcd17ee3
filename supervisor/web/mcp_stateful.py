"""MCP tools of stateful mode: asynchronous executions, heaps, sessions and tags."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from supervisor.app import Services
from supervisor.errors import McpV8Error
from supervisor.executions import build_run_request
from supervisor.executions.requests import HEAP_RANGE_MB, TIMEOUT_RANGE_S
from supervisor.web import heap_api
from supervisor.web.mcp_tools import what_code_can_use
from supervisor.web.models import (
    ExecutionList,
    ExecutionView,
    HeapList,
    HeapTags,
    OutputPageView,
    SessionList,
    SessionSnapshots,
)
from supervisor.web.rest import MAX_BYTE_LIMIT, MAX_LINE_LIMIT, output_range

SESSION_HEADER = "x-mcp-session-id"

INSTRUCTIONS = """\
Runs JavaScript in a fresh, isolated V8 sandbox per call, with state that
persists between runs as content-addressed heap snapshots. run_js returns an
execution_id at once; poll get_execution until the status is final, read
console output with get_execution_output, and pass the returned `heap` to the
next run_js to continue from that state. No network, files or environment.
"""

RUN_JS = f"""\
Start running JavaScript in a fresh V8 sandbox; returns {{execution_id}} at once.

- Pass `heap` (a 64-character hash from an earlier get_execution) to resume
  from that state: every global the earlier code created (var, let, const,
  functions, classes, globalThis properties) is there again. Omit it to start
  from an empty global scope. An unknown heap is an error.
- REPL semantics: the value of the last expression becomes `result`;
  top-level await, Promises and timers work until everything settles.
- Poll get_execution(execution_id) until status is completed, failed,
  cancelled or timed_out (queued and running are not final). When completed it
  returns the new `heap` and lists in `not_persisted` any global that could
  not be saved (closures, symbols, WeakMaps, Promises...).
- console output is read with get_execution_output, also while it runs.
- `tags` (string to string) are set on the heap this run produces.
Limits: execution_timeout_secs {TIMEOUT_RANGE_S[0]}-{TIMEOUT_RANGE_S[1]}, heap_memory_max_mb caps
the JavaScript heap. No network, files, environment or subprocesses.
"""


class RunStarted(BaseModel):
    """What run_js returns in stateful mode."""

    execution_id: str = Field(description="Poll get_execution with this id")
    status: str = Field(description="queued: the execution waits for a slot or has started")


def _session_of(ctx: Context, default: str | None) -> str | None:
    headers = ctx.headers
    if headers is not None and headers.get(SESSION_HEADER):
        return str(headers.get(SESSION_HEADER))
    return default


def create_stateful_server(services: Services) -> MCPServer:
    """The MCP server of stateful mode, bound to the running services."""
    server = MCPServer("mcp-v8", instructions=INSTRUCTIONS, version="0.1.0")
    engine = services.engine
    settings = services.settings

    async def guarded(call: Any) -> Any:
        try:
            return await call
        except McpV8Error as exc:
            raise ToolError(exc.message) from None

    @server.tool(name="run_js", description=RUN_JS + what_code_can_use(services))
    async def run_js(
        code: Annotated[str, Field(description="JavaScript source to run")],
        ctx: Context,
        heap: Annotated[
            str | None, Field(description="Heap hash to resume from; omit to start fresh")
        ] = None,
        heap_memory_max_mb: Annotated[
            int | None,
            Field(
                description="JavaScript heap limit in MB", ge=HEAP_RANGE_MB[0], le=HEAP_RANGE_MB[1]
            ),
        ] = None,
        execution_timeout_secs: Annotated[
            float | None,
            Field(
                description="Time limit in seconds", ge=TIMEOUT_RANGE_S[0], le=TIMEOUT_RANGE_S[1]
            ),
        ] = None,
        tags: Annotated[
            dict[str, str] | None, Field(description="Tags for the heap this run produces")
        ] = None,
    ) -> RunStarted:
        async def start() -> RunStarted:
            run = build_run_request(
                settings.sandbox,
                code,
                heap_memory_max_mb,
                execution_timeout_secs,
                stateful=True,
                heap=heap,
                session=_session_of(ctx, settings.session_id),
                tags=tags,
            )
            record = await engine.submit(run)
            return RunStarted(execution_id=record.execution_id, status=record.status.value)

        result: RunStarted = await guarded(start())
        return result

    @server.tool(
        description="Status, result, new heap and error of an execution. Final statuses: "
        "completed, failed, cancelled, timed_out; queued and running mean poll again."
    )
    async def get_execution(
        execution_id: Annotated[str, Field(description="Id returned by run_js")],
    ) -> ExecutionView:
        return ExecutionView.of(await guarded(engine.get(execution_id)))

    @server.tool(
        description="A page of an execution's console output, readable while it runs. Line "
        "mode: line_offset (1-based, default 1), line_limit (default 100). Byte mode: "
        "byte_offset (0-based), byte_limit (default 4096). Follow next_line_offset or "
        "next_byte_offset while has_more is true."
    )
    async def get_execution_output(
        execution_id: Annotated[str, Field(description="Id returned by run_js")],
        line_offset: Annotated[int | None, Field(ge=1)] = None,
        line_limit: Annotated[int | None, Field(ge=1, le=MAX_LINE_LIMIT)] = None,
        byte_offset: Annotated[int | None, Field(ge=0)] = None,
        byte_limit: Annotated[int | None, Field(ge=1, le=MAX_BYTE_LIMIT)] = None,
    ) -> OutputPageView:
        async def page() -> OutputPageView:
            chosen = output_range(line_offset, line_limit, byte_offset, byte_limit)
            return OutputPageView.of(await engine.output(execution_id, chosen))

        result: OutputPageView = await guarded(page())
        return result

    @server.tool(description="Cancel an execution: its sandbox is killed, status cancelled.")
    async def cancel_execution(
        execution_id: Annotated[str, Field(description="Id returned by run_js")],
    ) -> ExecutionView:
        return ExecutionView.of(await guarded(engine.cancel(execution_id)))

    @server.tool(description="Executions, newest first.")
    async def list_executions(
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> ExecutionList:
        records = await guarded(engine.list(limit=limit, offset=offset))
        return ExecutionList(executions=[ExecutionView.of(r) for r in records])

    @server.tool(description="Names of the sessions that have logged executions.")
    async def list_sessions() -> SessionList:
        result: SessionList = await guarded(heap_api.list_sessions(services))
        return result

    @server.tool(
        description="The log of a session, oldest first: index, input_heap, output_heap, code, "
        "timestamp of each execution. `fields` picks a comma-separated subset."
    )
    async def list_session_snapshots(
        session: Annotated[str, Field(description="Session name")],
        fields: Annotated[
            str | None, Field(description="e.g. 'index,output_heap'; default all")
        ] = None,
    ) -> SessionSnapshots:
        result: SessionSnapshots = await guarded(
            heap_api.session_snapshots(services, session, fields)
        )
        return result

    @server.tool(description="The tags of a heap.")
    async def get_heap_tags(heap: Annotated[str, Field(description="Heap hash")]) -> HeapTags:
        result: HeapTags = await guarded(heap_api.get_tags(services, heap))
        return result

    @server.tool(description="Replace the tags of a heap with these (string to string).")
    async def set_heap_tags(
        heap: Annotated[str, Field(description="Heap hash")],
        tags: Annotated[dict[str, str], Field(description="The new tags")],
    ) -> HeapTags:
        result: HeapTags = await guarded(heap_api.set_tags(services, heap, tags))
        return result

    @server.tool(description="Remove these tag keys from a heap; returns the remaining tags.")
    async def delete_heap_tags(
        heap: Annotated[str, Field(description="Heap hash")],
        keys: Annotated[list[str], Field(description="Tag keys to remove")],
    ) -> HeapTags:
        result: HeapTags = await guarded(heap_api.delete_tags(services, heap, keys))
        return result

    @server.tool(description="Heaps whose tags contain every given key/value pair.")
    async def query_heaps_by_tags(
        tags: Annotated[dict[str, str], Field(description="Pairs every result must have")],
    ) -> HeapList:
        result: HeapList = await guarded(heap_api.query_heaps(services, tags))
        return result

    return server
