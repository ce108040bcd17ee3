"""The MCP server: tools for agents, over stdio, Streamable HTTP or SSE."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from supervisor.app import Services
from supervisor.errors import McpV8Error
from supervisor.executions import build_run_request
from supervisor.executions.capabilities import Capabilities
from supervisor.executions.requests import HEAP_RANGE_MB, TIMEOUT_RANGE_S
from supervisor.store import ByteRange, ExecutionStatus

logger = logging.getLogger(__name__)

# What run_js returns of the console output; the rest stays readable by REST.
RUN_JS_OUTPUT_MAX_BYTES = 256 * 1024

INSTRUCTIONS = """\
Runs JavaScript (and code with top-level await) in a fresh, isolated V8 sandbox
for every call. The sandbox has no network, no filesystem and no environment.
Use run_js for calculations, data transformation, parsing, and checking code.
"""

RUN_JS_DESCRIPTION = f"""\
Run JavaScript in a fresh V8 sandbox and wait for it to finish.

How it behaves:
- REPL semantics: the value of the last expression is returned as `result`
  (`1 + 1` gives "2"). Top-level `await` works; timers (setTimeout,
  setInterval) and Promises run until everything settles.
- `result` is a string or null: null for undefined, strings as they are,
  numbers/booleans/null as text, plain objects and arrays as JSON, anything
  else (Map, functions, class instances) in Node's inspect style.
- console.log/info/debug/warn/error/table/dir are captured in `output`
  (warn lines start with "[WARN] ", error lines with "[ERROR] "). At most
  {RUN_JS_OUTPUT_MAX_BYTES // 1024} KiB of output is returned here.
- Nothing persists between calls: each call starts from an empty global scope.
- No network, files, environment or subprocesses are available.

`status` is one of completed, failed, timed_out, cancelled. When the code
throws, times out or exceeds its memory limit, isError is true and `error`
says why (with a stack whose line numbers refer to your code).
Limits: execution_timeout_secs {TIMEOUT_RANGE_S[0]}-{TIMEOUT_RANGE_S[1]} (server default applies
when omitted); heap_memory_max_mb caps the JavaScript heap.
"""


def what_code_can_use(services: Services) -> str:
    """The run_js description's note on TypeScript and on what this server grants."""
    lines = ["", "What the code can use on this server:"]
    if services.settings.sandbox.typescript or services.settings.modules.enabled:
        lines.append("- TypeScript: types are stripped (not checked) before the code runs.")
    calls = services.engine.calls
    policies = calls.policies if isinstance(calls, Capabilities) else None
    if policies is not None and policies.has("fetch"):
        lines.append("- fetch(url, init): the server performs it if its policy allows the request.")
    if policies is not None and policies.has("fs"):
        lines.append(
            "- fs.readFile/writeFile/appendFile/readdir/stat/mkdir/rm/rename/copyFile/exists "
            "(Promise-based), on the paths the server's policy allows."
        )
    if services.settings.modules.enabled:
        lines.append(
            '- Imports: `import _ from "npm:lodash-es@4.17.21"`, `jsr:@scope/name@1`, '
            "https:// module URLs, statically or with import(); pin versions. The server "
            "downloads and bundles them (and may refuse some by policy)."
        )
    else:
        lines.append("- No npm:, jsr: or URL imports (node: built-ins only).")
    return "\n".join(lines) + "\n"


class RunJsResult(BaseModel):
    """What run_js returns."""

    execution_id: str = Field(description="Id of this execution")
    status: str = Field(description="completed, failed, timed_out or cancelled")
    output: str = Field(description="Console output, lines ending in newlines")
    result: str | None = Field(
        default=None, description="Completion value of the code as text (null for undefined)"
    )
    error: str | None = Field(default=None, description="Why the execution failed, if it did")


def create_mcp_server(services: Services) -> MCPServer:
    """Build the MCP server with its tools bound to the running services."""
    if services.engine.stateful:
        from supervisor.web.mcp_stateful import create_stateful_server

        return create_stateful_server(services)
    server = MCPServer("mcp-v8", instructions=INSTRUCTIONS, version="0.1.0")
    engine = services.engine
    sandbox = services.settings.sandbox

    @server.tool(name="run_js", description=RUN_JS_DESCRIPTION + what_code_can_use(services))
    async def run_js(
        code: Annotated[str, Field(description="JavaScript source to run")],
        heap_memory_max_mb: Annotated[
            int | None,
            Field(
                description="JavaScript heap limit in MB for this run",
                ge=HEAP_RANGE_MB[0],
                le=HEAP_RANGE_MB[1],
            ),
        ] = None,
        execution_timeout_secs: Annotated[
            float | None,
            Field(
                description="Time limit in seconds for this run",
                ge=TIMEOUT_RANGE_S[0],
                le=TIMEOUT_RANGE_S[1],
            ),
        ] = None,
    ) -> Annotated[CallToolResult, RunJsResult]:
        try:
            run = build_run_request(sandbox, code, heap_memory_max_mb, execution_timeout_secs)
            record = await engine.submit(run)
        except McpV8Error as exc:
            raise ToolError(exc.message) from None
        try:
            record = await engine.wait(record.execution_id)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await engine.cancel(record.execution_id)
            raise
        page = await engine.output(
            record.execution_id, ByteRange(offset=0, limit=RUN_JS_OUTPUT_MAX_BYTES)
        )
        output = page.data
        if page.has_more:
            output += f"[... {page.total_bytes - page.end_byte} more bytes of output not shown]\n"
        result = RunJsResult(
            execution_id=record.execution_id,
            status=record.status.value,
            output=output,
            result=record.result,
            error=record.error,
        )
        return _tool_result(result, is_error=record.status is not ExecutionStatus.COMPLETED)

    return server


def _tool_result(model: BaseModel, *, is_error: bool) -> CallToolResult:
    data: dict[str, Any] = model.model_dump()
    return CallToolResult(
        content=[TextContent(type="text", text=model.model_dump_json(indent=2))],
        structured_content=data,
        is_error=is_error,
    )
