"""The interface every execution store implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from supervisor.store.models import (
    ByteRange,
    ExecutionRecord,
    ExecutionStatus,
    LineRange,
    NotPersisted,
    OutputPage,
)


class ExecutionStore(Protocol):
    """Durable executions and their output."""

    async def open(self) -> int:
        """Prepare storage; mark executions left unfinished by a dead supervisor as failed.

        Returns how many were marked.
        """
        ...

    async def close(self) -> None:
        """Release the storage."""
        ...

    async def create(self, record: ExecutionRecord) -> None:
        """Store a new execution."""
        ...

    async def mark_running(self, execution_id: str, started_at: str) -> None:
        """Record that an execution got its sandbox."""
        ...

    async def append_output(self, execution_id: str, lines: Sequence[str]) -> None:
        """Append whole lines (each ending in a newline) to an execution's output."""
        ...

    async def finish(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        result: str | None,
        error: str | None,
        completed_at: str,
        heap: str | None = None,
        not_persisted: tuple[NotPersisted, ...] = (),
    ) -> None:
        """Record the final status of an execution (and the snapshot it produced)."""
        ...

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        """One execution, or None."""
        ...

    async def list(self, *, limit: int, offset: int) -> list[ExecutionRecord]:
        """Executions, newest first."""
        ...

    async def read_output(
        self, execution_id: str, page: LineRange | ByteRange
    ) -> OutputPage | None:
        """A page of an execution's output, or None for an unknown execution."""
        ...
