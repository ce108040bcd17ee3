"""The REST API (Quart): executions, output, sessions, heap tags, and the OpenAPI document."""

from __future__ import annotations

import logging
import math
import uuid
from pathlib import Path
from typing import Any, TypeVar

import swagger_ui_bundle
from pydantic import BaseModel, ValidationError
from quart import Quart, Response, request, send_from_directory

from supervisor.app import Services
from supervisor.errors import InvalidRequest, McpV8Error
from supervisor.executions import build_run_request
from supervisor.store import ByteRange, LineRange
from supervisor.web import heap_api
from supervisor.web.connection import InlineHTTPConnection
from supervisor.web.models import (
    ErrorBody,
    ErrorDetail,
    ExecAccepted,
    ExecRequest,
    ExecutionList,
    ExecutionView,
    OutputPageView,
    TagKeysBody,
    TagsBody,
)
from supervisor.web.openapi import openapi_document

logger = logging.getLogger(__name__)

MAX_WAIT_S = 300.0
MAX_LINE_LIMIT = 10_000
MAX_BYTE_LIMIT = 1024 * 1024
_SWAGGER_ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
_SWAGGER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mcp-v8 API</title>
<link rel="stylesheet" href="/swagger-ui/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/swagger-ui/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api-doc/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""

M = TypeVar("M", bound=BaseModel)


def _reply(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _reply(ErrorBody(error=ErrorDetail(code=code, message=message)), status)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def _body(model: type[M]) -> M:
    raw = await request.get_data(as_text=False)
    if not raw:
        raise InvalidRequest("request body must be a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidRequest(f"request body is not valid JSON: {_describe(exc)}") from None
        if any(e["type"] == "model_type" for e in exc.errors()):
            raise InvalidRequest("request body must be a JSON object") from None
        raise InvalidRequest(_describe(exc)) from None


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
    """The Quart app serving ``/api``, ``/api-doc/openapi.json`` and ``/swagger-ui``."""
    app = Quart("mcp_v8")
    app.asgi_http_class = InlineHTTPConnection
    app.config["MAX_CONTENT_LENGTH"] = services.settings.http.max_body_bytes
    # The guard in front (guard.py) has read every body already, within its own
    # deadline; Quart's would only wrap the replayed body in one more task.
    app.config["BODY_TIMEOUT"] = None
    engine = services.engine
    document = openapi_document()

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
    async def submit() -> Response:
        body = await _body(ExecRequest)
        run = build_run_request(
            services.settings.sandbox,
            body.code,
            body.heap_memory_max_mb,
            body.execution_timeout_secs,
            stateful=engine.stateful,
            heap=body.heap,
            session=body.session,
            tags=body.tags,
        )
        record = await engine.submit(run)
        return _reply(ExecAccepted(execution_id=record.execution_id, status=record.status.value))

    @app.get("/api/executions")
    async def list_executions() -> Response:
        limit = _int_arg("limit", 1, 1000) or 100
        offset = _int_arg("offset", 0, 2**62) or 0
        records = await engine.list(limit=limit, offset=offset)
        return _reply(ExecutionList(executions=[ExecutionView.of(r) for r in records]))

    @app.get("/api/executions/<execution_id>")
    async def get_execution(execution_id: str) -> Response:
        raw = request.args.get("wait")
        if raw is None:
            return _reply(ExecutionView.of(await engine.get(execution_id)))
        try:
            wait = float(raw)
        except ValueError:
            raise InvalidRequest(f"wait must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(wait) or not 0 <= wait <= MAX_WAIT_S:
            raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT_S:g} seconds, got {raw}")
        # An unknown id is a 404 at once: wait() only waits for a live execution.
        return _reply(ExecutionView.of(await engine.wait(execution_id, wait)))

    @app.get("/api/executions/<execution_id>/output")
    async def get_output(execution_id: str) -> Response:
        page = output_range(
            _int_arg("line_offset", 1, 2**62),
            _int_arg("line_limit", 1, MAX_LINE_LIMIT),
            _int_arg("byte_offset", 0, 2**62),
            _int_arg("byte_limit", 1, MAX_BYTE_LIMIT),
        )
        return _reply(OutputPageView.of(await engine.output(execution_id, page)))

    @app.post("/api/executions/<execution_id>/cancel")
    async def cancel(execution_id: str) -> Response:
        return _reply(ExecutionView.of(await engine.cancel(execution_id)))

    @app.get("/api/sessions")
    async def list_sessions() -> Response:
        return _reply(await heap_api.list_sessions(services))

    @app.get("/api/sessions/<session>/snapshots")
    async def list_session_snapshots(session: str) -> Response:
        fields = request.args.get("fields")
        return _reply(await heap_api.session_snapshots(services, session, fields))

    @app.get("/api/heaps/<heap>/tags")
    async def get_heap_tags(heap: str) -> Response:
        return _reply(await heap_api.get_tags(services, heap))

    @app.put("/api/heaps/<heap>/tags")
    async def set_heap_tags(heap: str) -> Response:
        body = await _body(TagsBody)
        return _reply(await heap_api.set_tags(services, heap, body.tags))

    @app.delete("/api/heaps/<heap>/tags")
    async def delete_heap_tags(heap: str) -> Response:
        body = await _body(TagKeysBody)
        return _reply(await heap_api.delete_tags(services, heap, body.keys))

    @app.post("/api/heaps/query")
    async def query_heaps_by_tags() -> Response:
        body = await _body(TagsBody)
        return _reply(await heap_api.query_heaps(services, body.tags))

    @app.get("/api-doc/openapi.json")
    async def openapi_json() -> dict[str, Any]:
        return document

    @app.get("/swagger-ui")
    async def swagger_ui() -> Response:
        return Response(_SWAGGER_PAGE, mimetype="text/html")

    @app.get("/swagger-ui/assets/<path:name>")
    async def swagger_assets(name: str) -> Response:
        return await send_from_directory(_SWAGGER_ASSETS, name)

    return app
