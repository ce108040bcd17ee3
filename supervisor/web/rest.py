"""The REST API (Quart): submit, inspect, page output of and cancel executions."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import msgspec
from quart import Quart, Response, jsonify, request

from supervisor.app import Services
from supervisor.errors import InvalidRequest, McpV8Error
from supervisor.executions import build_run_request
from supervisor.store import ByteRange, ExecutionRecord, LineRange, OutputPage

logger = logging.getLogger(__name__)

_EXEC_FIELDS = {"code", "heap_memory_max_mb", "execution_timeout_secs"}
MAX_WAIT_S = 300.0
MAX_LINE_LIMIT = 10_000
MAX_BYTE_LIMIT = 1024 * 1024


def record_json(record: ExecutionRecord) -> dict[str, Any]:
    """The public view of an execution."""
    return {
        "execution_id": record.execution_id,
        "status": record.status.value,
        "result": record.result,
        "error": record.error,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
    }


def page_json(page: OutputPage) -> dict[str, Any]:
    """The public view of an output page."""
    return {
        "data": page.data,
        "start_line": page.start_line,
        "end_line": page.end_line,
        "next_line_offset": page.next_line_offset,
        "start_byte": page.start_byte,
        "end_byte": page.end_byte,
        "next_byte_offset": page.next_byte_offset,
        "total_lines": page.total_lines,
        "total_bytes": page.total_bytes,
        "has_more": page.has_more,
        "status": page.status.value,
    }


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _int_arg(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def output_range(
    line_offset: int | None,
    line_limit: int | None,
    byte_offset: int | None,
    byte_limit: int | None,
) -> LineRange | ByteRange:
    """Line mode unless a byte parameter is given; mixing the two is an error."""
    lines = line_offset is not None or line_limit is not None
    if byte_offset is not None or byte_limit is not None:
        if lines:
            raise InvalidRequest("use either line_offset/line_limit or byte_offset/byte_limit")
        return ByteRange(
            offset=0 if byte_offset is None else byte_offset,
            limit=4096 if byte_limit is None else byte_limit,
        )
    return LineRange(
        offset=1 if line_offset is None else line_offset,
        limit=100 if line_limit is None else line_limit,
    )


def create_rest_app(services: Services) -> Quart:
    """The Quart app serving ``/api``."""
    app = Quart("mcp_v8")
    app.config["MAX_CONTENT_LENGTH"] = services.settings.http.max_body_bytes
    engine = services.engine

    @app.errorhandler(McpV8Error)
    async def _known(exc: McpV8Error) -> Response:
        return _error(exc.http_status, exc.code, exc.message)

    @app.errorhandler(404)
    async def _missing(_exc: Exception) -> Response:
        return _error(404, "not_found", f"no route for {request.method} {request.path}")

    @app.errorhandler(405)
    async def _method(_exc: Exception) -> Response:
        return _error(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.path}"
        )

    @app.errorhandler(413)
    async def _too_large(_exc: Exception) -> Response:
        limit = services.settings.http.max_body_bytes
        return _error(413, "payload_too_large", f"request body is over the {limit}-byte limit")

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        incident = uuid.uuid4().hex[:12]
        logger.error("unexpected error (incident %s)", incident, exc_info=exc)
        return _error(500, "internal", f"internal error (incident {incident})")

    @app.post("/api/exec")
    async def submit() -> tuple[dict[str, Any], int]:
        body = await _json_object()
        unknown = sorted(set(body) - _EXEC_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
        run = build_run_request(
            services.settings.sandbox,
            body.get("code"),
            body.get("heap_memory_max_mb"),
            body.get("execution_timeout_secs"),
        )
        record = await engine.submit(run)
        return {"execution_id": record.execution_id, "status": record.status.value}, 200

    @app.get("/api/executions")
    async def list_executions() -> dict[str, Any]:
        limit = _int_arg("limit", 1, 1000) or 100
        offset = _int_arg("offset", 0, 2**62) or 0
        records = await engine.list(limit=limit, offset=offset)
        return {"executions": [record_json(r) for r in records]}

    @app.get("/api/executions/<execution_id>")
    async def get_execution(execution_id: str) -> dict[str, Any]:
        raw = request.args.get("wait")
        if raw is None:
            return record_json(await engine.get(execution_id))
        try:
            wait = float(raw)
        except ValueError:
            raise InvalidRequest(f"wait must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(wait) or not 0 <= wait <= MAX_WAIT_S:
            raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT_S:g} seconds, got {raw}")
        await engine.get(execution_id)  # 404 before waiting
        return record_json(await engine.wait(execution_id, wait))

    @app.get("/api/executions/<execution_id>/output")
    async def get_output(execution_id: str) -> dict[str, Any]:
        page = output_range(
            _int_arg("line_offset", 1, 2**62),
            _int_arg("line_limit", 1, MAX_LINE_LIMIT),
            _int_arg("byte_offset", 0, 2**62),
            _int_arg("byte_limit", 1, MAX_BYTE_LIMIT),
        )
        return page_json(await engine.output(execution_id, page))

    @app.post("/api/executions/<execution_id>/cancel")
    async def cancel(execution_id: str) -> dict[str, Any]:
        return record_json(await engine.cancel(execution_id))

    return app


async def _json_object() -> dict[str, Any]:
    raw = await request.get_data(as_text=False)
    try:
        body = msgspec.json.decode(raw) if raw else None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body
