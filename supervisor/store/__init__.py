"""Durable executions and their console output."""

from supervisor.store.base import ExecutionStore
from supervisor.store.models import (
    ByteRange,
    ExecutionRecord,
    ExecutionStatus,
    LineRange,
    NotPersisted,
    OutputPage,
)
from supervisor.store.sqlite import INTERRUPTED, SqliteExecutionStore

__all__ = [
    "INTERRUPTED",
    "ByteRange",
    "ExecutionRecord",
    "ExecutionStatus",
    "ExecutionStore",
    "LineRange",
    "NotPersisted",
    "OutputPage",
    "SqliteExecutionStore",
]
