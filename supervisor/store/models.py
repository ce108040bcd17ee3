"""What the execution store keeps: records, statuses and output pages."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ExecutionStatus(StrEnum):
    """Lifecycle of an execution.

    ``queued`` waits for a free slot (``--max-concurrent-executions``);
    ``running`` has a sandbox; the other four are final.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        """True once the execution can no longer change."""
        return self not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)


@dataclass(frozen=True, kw_only=True)
class ExecutionRecord:
    """One execution as stored."""

    execution_id: str
    status: ExecutionStatus
    code: str
    result: str | None = None
    error: str | None = None
    heap_memory_max_mb: int
    execution_timeout_secs: float
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    total_lines: int = 0
    total_bytes: int = 0
    input_heap: str | None = None
    heap: str | None = None
    session: str | None = None
    not_persisted: tuple[NotPersisted, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class NotPersisted:
    """A global a snapshot could not keep, and why."""

    name: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class OutputPage:
    """A page of console output, by lines or by bytes, with where to go next."""

    data: str
    start_line: int
    end_line: int
    next_line_offset: int
    start_byte: int
    end_byte: int
    next_byte_offset: int
    total_lines: int
    total_bytes: int
    has_more: bool
    status: ExecutionStatus


@dataclass(frozen=True)
class LineRange:
    """Line mode: ``limit`` lines from 1-based ``offset``."""

    offset: int = 1
    limit: int = 100


@dataclass(frozen=True)
class ByteRange:
    """Byte mode: at most ``limit`` bytes from 0-based ``offset``, never splitting a character."""

    offset: int = 0
    limit: int = 4096
