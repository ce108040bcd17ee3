"""The OpenAPI 3 document, generated from the models the REST handlers use.

``ROUTES`` is the single list of REST operations: the document is built from
it, and a test checks that the Quart app serves exactly these routes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from supervisor.web.models import (
    ErrorBody,
    ExecAccepted,
    ExecRequest,
    ExecutionList,
    ExecutionView,
    HeapList,
    HeapTags,
    OutputPageView,
    SessionList,
    SessionSnapshots,
    TagKeysBody,
    TagsBody,
)

VERSION = "0.1.0"


@dataclass(frozen=True)
class Param:
    """A path or query parameter."""

    name: str
    where: str  # "path" or "query"
    type: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    """One REST operation."""

    method: str
    path: str
    operation_id: str
    summary: str
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()


_ID = Param("execution_id", "path", "string", "Execution id", required=True)
_HEAP = Param("heap", "path", "string", "SHA-256 of a stored snapshot", required=True)
_SESSION = Param("session", "path", "string", "Session name", required=True)

ROUTES: tuple[Route, ...] = (
    Route(
        "post",
        "/api/exec",
        "exec",
        "Submit code; returns at once with an execution id",
        ExecAccepted,
        body=ExecRequest,
    ),
    Route(
        "get",
        "/api/executions",
        "list_executions",
        "List executions, newest first",
        ExecutionList,
        params=(
            Param("limit", "query", "integer", "At most this many (1-1000, default 100)"),
            Param("offset", "query", "integer", "Skip this many (default 0)"),
        ),
    ),
    Route(
        "get",
        "/api/executions/{execution_id}",
        "get_execution",
        "Status, result, heap and error of an execution",
        ExecutionView,
        params=(
            _ID,
            Param(
                "wait",
                "query",
                "number",
                "Wait up to this many seconds (0-300) for the execution to end",
            ),
        ),
    ),
    Route(
        "get",
        "/api/executions/{execution_id}/output",
        "get_execution_output",
        "A page of console output, by lines or by bytes",
        OutputPageView,
        params=(
            _ID,
            Param("line_offset", "query", "integer", "First line, 1-based (default 1)"),
            Param("line_limit", "query", "integer", "Lines per page (default 100)"),
            Param("byte_offset", "query", "integer", "First byte, 0-based"),
            Param("byte_limit", "query", "integer", "Bytes per page (default 4096)"),
        ),
    ),
    Route(
        "post",
        "/api/executions/{execution_id}/cancel",
        "cancel_execution",
        "Cancel an execution (its sandbox is killed)",
        ExecutionView,
        params=(_ID,),
    ),
    Route(
        "get",
        "/api/sessions",
        "list_sessions",
        "Names of sessions with logged executions",
        SessionList,
    ),
    Route(
        "get",
        "/api/sessions/{session}/snapshots",
        "list_session_snapshots",
        "The log of a session, oldest first",
        SessionSnapshots,
        params=(
            _SESSION,
            Param(
                "fields",
                "query",
                "string",
                "Comma-separated subset of index,input_heap,output_heap,code,timestamp",
            ),
        ),
    ),
    Route(
        "get",
        "/api/heaps/{heap}/tags",
        "get_heap_tags",
        "The tags of a heap",
        HeapTags,
        params=(_HEAP,),
    ),
    Route(
        "put",
        "/api/heaps/{heap}/tags",
        "set_heap_tags",
        "Replace the tags of a heap",
        HeapTags,
        body=TagsBody,
        params=(_HEAP,),
    ),
    Route(
        "delete",
        "/api/heaps/{heap}/tags",
        "delete_heap_tags",
        "Remove tags from a heap",
        HeapTags,
        body=TagKeysBody,
        params=(_HEAP,),
    ),
    Route(
        "post",
        "/api/heaps/query",
        "query_heaps_by_tags",
        "Heaps whose tags contain every given pair",
        HeapList,
        body=TagsBody,
    ),
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the REST API."""
    models: set[type[BaseModel]] = {ErrorBody}
    for route in ROUTES:
        models.add(route.response)
        if route.body is not None:
            models.add(route.body)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schema = models_json_schema(
        [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": _ref(route.response)}},
                },
                "default": {
                    "description": "An error, with a stable code",
                    "content": {"application/json": {"schema": _ref(ErrorBody)}},
                },
            },
        }
        if route.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required,
                    "description": p.description,
                    "schema": {"type": p.type},
                }
                for p in route.params
            ]
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(route.body)}},
            }
        paths.setdefault(route.path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcp-v8",
            "version": VERSION,
            "description": "Run JavaScript in a permission-less V8 sandbox.",
        },
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {})},
    }


def openapi_text() -> str:
    """The document as committed in ``openapi.json`` (stable formatting)."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
