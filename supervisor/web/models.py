"""Request and response models shared by the REST API, the MCP tools and the OpenAPI document."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from supervisor.sessions import SessionEntry
from supervisor.store import ExecutionRecord, OutputPage


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ExecRequest(_Strict):
    """Body of ``POST /api/exec``."""

    code: str = Field(description="JavaScript or TypeScript to run")
    heap: str | None = Field(
        default=None, description="SHA-256 of a snapshot to resume from (stateful mode)"
    )
    session: str | None = Field(
        default=None, description="Log this execution under a named session (stateful mode)"
    )
    heap_memory_max_mb: int | None = Field(default=None, description="JavaScript heap limit, MB")
    execution_timeout_secs: float | None = Field(default=None, description="Time limit, 1-300 s")
    tags: dict[str, str] | None = Field(
        default=None, description="Tags to set on the snapshot this run produces"
    )


class ExecAccepted(BaseModel):
    """Reply to ``POST /api/exec``: the execution was queued."""

    execution_id: str
    status: str


class NotPersistedView(BaseModel):
    """A global the snapshot could not keep."""

    name: str
    reason: str


class ExecutionView(BaseModel):
    """An execution as clients see it."""

    execution_id: str
    status: str = Field(description="queued, running, completed, failed, cancelled or timed_out")
    result: str | None = Field(description="Completion value as text; null for undefined")
    error: str | None = Field(description="Why the execution failed, if it did")
    heap: str | None = Field(description="Snapshot this run produced (stateful mode)")
    input_heap: str | None = Field(description="Snapshot this run resumed from")
    session: str | None
    not_persisted: list[NotPersistedView] = Field(
        description="Globals the snapshot could not keep, and why"
    )
    created_at: str
    started_at: str | None
    completed_at: str | None

    @classmethod
    def of(cls, record: ExecutionRecord) -> ExecutionView:
        """The view of a stored record."""
        return cls(
            execution_id=record.execution_id,
            status=record.status.value,
            result=record.result,
            error=record.error,
            heap=record.heap,
            input_heap=record.input_heap,
            session=record.session,
            not_persisted=[
                NotPersistedView(name=n.name, reason=n.reason) for n in record.not_persisted
            ],
            created_at=record.created_at,
            started_at=record.started_at,
            completed_at=record.completed_at,
        )


class ExecutionList(BaseModel):
    """Executions, newest first."""

    executions: list[ExecutionView]


class OutputPageView(BaseModel):
    """A page of console output."""

    data: str = Field(description="The exact text of the page, newlines included")
    start_line: int
    end_line: int
    next_line_offset: int
    start_byte: int
    end_byte: int
    next_byte_offset: int
    total_lines: int
    total_bytes: int
    has_more: bool
    status: str

    @classmethod
    def of(cls, page: OutputPage) -> OutputPageView:
        """The view of a stored page (the same fields; the status as its text)."""
        return cls(**{**asdict(page), "status": page.status.value})


class SessionList(BaseModel):
    """Names of the sessions that have logged executions."""

    sessions: list[str]


class SessionSnapshots(BaseModel):
    """The log of one session, oldest first, with the requested fields."""

    session: str
    snapshots: list[dict[str, Any]]


def entry_fields(entry: SessionEntry, fields: list[str]) -> dict[str, Any]:
    """The chosen fields of one session log entry."""
    values: dict[str, Any] = {
        "index": entry.index,
        "input_heap": entry.input_heap,
        "output_heap": entry.output_heap,
        "code": entry.code,
        "timestamp": entry.timestamp,
    }
    return {name: values[name] for name in fields}


class HeapTags(BaseModel):
    """The tags of one heap."""

    heap: str
    tags: dict[str, str]


class TagsBody(_Strict):
    """Body of ``PUT /api/heaps/{heap}/tags`` and of a tag query."""

    tags: dict[str, str]


class TagKeysBody(_Strict):
    """Body of ``DELETE /api/heaps/{heap}/tags``."""

    keys: list[str]


class HeapList(BaseModel):
    """Heaps whose tags contain every pair asked for."""

    heaps: list[str]


class ErrorDetail(BaseModel):
    """What went wrong, with a stable code."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail
