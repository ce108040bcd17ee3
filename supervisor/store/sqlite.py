"""The embedded execution store: one SQLite file under the data directory.

Durability: WAL journal with ``synchronous=NORMAL``. Every commit survives a
crash of the supervisor process (SIGKILL included); a power loss may lose the
last few commits but never corrupts the database. Calls are short and made
from the event loop thread; output is written in batches.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from supervisor.db import connect, transaction
from supervisor.errors import StorageError
from supervisor.store.models import (
    ByteRange,
    ExecutionRecord,
    ExecutionStatus,
    LineRange,
    NotPersisted,
    OutputPage,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    code TEXT NOT NULL,
    result TEXT,
    error TEXT,
    heap_memory_max_mb INTEGER NOT NULL,
    execution_timeout_secs REAL NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    total_lines INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    input_heap TEXT,
    heap TEXT,
    session TEXT,
    not_persisted TEXT,
    tags TEXT
);
CREATE TABLE IF NOT EXISTS output_chunks (
    execution_id TEXT NOT NULL,
    first_line INTEGER NOT NULL,
    line_count INTEGER NOT NULL,
    byte_start INTEGER NOT NULL,
    byte_len INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (execution_id, first_line)
);
CREATE INDEX IF NOT EXISTS output_chunks_bytes ON output_chunks (execution_id, byte_start);
"""

_COLUMNS = (
    "execution_id, status, code, result, error, heap_memory_max_mb, execution_timeout_secs, "
    "created_at, started_at, completed_at, total_lines, total_bytes, input_heap, heap, session, "
    "not_persisted, tags"
)
# Columns added after the first release; older databases get them at open.
_ADDED_COLUMNS = ("input_heap", "heap", "session", "not_persisted", "tags")

INTERRUPTED = "the supervisor stopped while this execution was unfinished"


def _record(row: sqlite3.Row) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=row[0],
        status=ExecutionStatus(row[1]),
        code=row[2],
        result=row[3],
        error=row[4],
        heap_memory_max_mb=row[5],
        execution_timeout_secs=row[6],
        created_at=row[7],
        started_at=row[8],
        completed_at=row[9],
        total_lines=row[10],
        total_bytes=row[11],
        input_heap=row[12],
        heap=row[13],
        session=row[14],
        not_persisted=tuple(NotPersisted(name=n, reason=r) for n, r in json.loads(row[15] or "[]")),
        tags=tuple((k, v) for k, v in json.loads(row[16] or "{}").items()),
    )


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


class SqliteExecutionStore:
    """Executions and output in ``<data_dir>/executions.sqlite3``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.db)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError("the execution store is not open")
        return self._db

    async def open(self) -> int:
        try:
            db = connect(self.path, _SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(executions)")}
            for column in _ADDED_COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE executions ADD COLUMN {column} TEXT")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the execution store at {self.path}: {exc}") from None
        self._db = db
        with self._transaction():
            cursor = db.execute(
                "UPDATE executions SET status = ?, error = ?, "
                "completed_at = COALESCE(completed_at, started_at, created_at) "
                "WHERE status IN (?, ?)",
                (
                    ExecutionStatus.FAILED,
                    INTERRUPTED,
                    ExecutionStatus.QUEUED,
                    ExecutionStatus.RUNNING,
                ),
            )
        return cursor.rowcount

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def create(self, record: ExecutionRecord) -> None:
        self._write(
            f"INSERT INTO executions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.execution_id,
                record.status,
                record.code,
                record.result,
                record.error,
                record.heap_memory_max_mb,
                record.execution_timeout_secs,
                record.created_at,
                record.started_at,
                record.completed_at,
                record.total_lines,
                record.total_bytes,
                record.input_heap,
                record.heap,
                record.session,
                json.dumps([[n.name, n.reason] for n in record.not_persisted]),
                json.dumps(dict(record.tags)),
            ),
        )

    async def mark_running(self, execution_id: str, started_at: str) -> None:
        self._write(
            "UPDATE executions SET status = ?, started_at = ? WHERE execution_id = ?",
            (ExecutionStatus.RUNNING, started_at, execution_id),
        )

    async def append_output(self, execution_id: str, lines: Sequence[str]) -> None:
        """Store a batch of lines as one chunk: one row per flush, not per line."""
        if not lines:
            return
        data = "".join(lines)
        size = len(data.encode("utf-8"))
        try:
            with self._transaction() as db:
                first_line, byte_start = db.execute(
                    "SELECT total_lines, total_bytes FROM executions WHERE execution_id = ?",
                    (execution_id,),
                ).fetchone()
                db.execute(
                    "INSERT INTO output_chunks VALUES (?,?,?,?,?,?)",
                    (execution_id, first_line + 1, len(lines), byte_start, size, data),
                )
                db.execute(
                    "UPDATE executions SET total_lines = ?, total_bytes = ? WHERE execution_id = ?",
                    (first_line + len(lines), byte_start + size, execution_id),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store output: {exc}") from None

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
        self._write(
            "UPDATE executions SET status = ?, result = ?, error = ?, completed_at = ?, "
            "heap = ?, not_persisted = ? WHERE execution_id = ?",
            (
                status,
                result,
                error,
                completed_at,
                heap,
                json.dumps([[n.name, n.reason] for n in not_persisted]),
                execution_id,
            ),
        )

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        row = self._read_one(
            f"SELECT {_COLUMNS} FROM executions WHERE execution_id = ?", (execution_id,)
        )
        return None if row is None else _record(row)

    async def list(self, *, limit: int, offset: int) -> list[ExecutionRecord]:
        try:
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM executions ORDER BY rowid DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read executions: {exc}") from None
        return [_record(row) for row in rows]

    async def read_output(
        self, execution_id: str, page: LineRange | ByteRange
    ) -> OutputPage | None:
        record = await self.get(execution_id)
        if record is None:
            return None
        try:
            if isinstance(page, LineRange):
                return self._line_page(record, page)
            return self._byte_page(record, page)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read output: {exc}") from None

    def _chunks_from(
        self, execution_id: str, column: str, value: int
    ) -> Iterator[tuple[int, int, str]]:
        """``(first_line, byte_start, data)`` of the chunk holding ``value``, then the rest."""
        db = self.db
        first = db.execute(
            f"SELECT first_line FROM output_chunks WHERE execution_id = ? AND {column} <= ? "
            f"ORDER BY {column} DESC LIMIT 1",
            (execution_id, value),
        ).fetchone()
        start = first[0] if first else 1
        yield from db.execute(
            "SELECT first_line, byte_start, data FROM output_chunks "
            "WHERE execution_id = ? AND first_line >= ? ORDER BY first_line",
            (execution_id, start),
        )

    def _line_page(self, record: ExecutionRecord, page: LineRange) -> OutputPage:
        taken: list[str] = []
        start_byte: int | None = None
        end_byte = record.total_bytes
        for first_line, byte_start, data in self._chunks_from(
            record.execution_id, "first_line", page.offset
        ):
            position = byte_start
            # Lines end in "\n" alone; other line breaks (\r, \u2028...) are line content.
            lines = [part + "\n" for part in data.split("\n")[:-1]]
            for line_no, line in enumerate(lines, first_line):
                size = len(line.encode("utf-8"))
                if line_no >= page.offset:
                    if len(taken) == page.limit:
                        break
                    if start_byte is None:
                        start_byte = position
                    taken.append(line)
                    end_byte = position + size
                position += size
            if len(taken) == page.limit:
                break
        if start_byte is None:
            start_byte = end_byte = record.total_bytes
        end_line = (
            page.offset + len(taken) - 1 if taken else min(page.offset - 1, record.total_lines)
        )
        return OutputPage(
            data="".join(taken),
            start_line=page.offset,
            end_line=end_line,
            next_line_offset=end_line + 1,
            start_byte=start_byte,
            end_byte=end_byte,
            next_byte_offset=end_byte,
            total_lines=record.total_lines,
            total_bytes=record.total_bytes,
            has_more=end_line < record.total_lines,
            status=record.status,
        )

    def _byte_page(self, record: ExecutionRecord, page: ByteRange) -> OutputPage:
        offset = min(page.offset, record.total_bytes)
        want = offset + page.limit + 4  # a character past the end shows a split there
        parts: list[bytes] = []
        base: int | None = None
        first: int = record.total_lines + 1
        for first_line, byte_start, data in self._chunks_from(
            record.execution_id, "byte_start", offset
        ):
            if base is None:
                base, first = byte_start, first_line
            parts.append(data.encode("utf-8"))
            if byte_start + len(parts[-1]) >= want:
                break
        if base is None:
            base = offset
        blob = b"".join(parts)
        start = offset - base
        while 0 < start < len(blob) and _is_continuation(blob[start]):
            start -= 1
        end = min(start + page.limit, len(blob))
        while start < end < len(blob) and _is_continuation(blob[end]):
            end -= 1
        if end == start < len(blob) and page.limit > 0:  # a limit smaller than one character
            end += 1
            while end < len(blob) and _is_continuation(blob[end]):
                end += 1
        start_line = first + blob.count(b"\n", 0, start)
        if end > start:
            end_line = first + blob.count(b"\n", 0, end - 1)
            next_line = end_line + 1 if blob[end - 1] == 0x0A else end_line
        else:
            end_line, next_line = start_line - 1, start_line
        return OutputPage(
            data=blob[start:end].decode("utf-8"),
            start_line=start_line,
            end_line=end_line,
            next_line_offset=next_line,
            start_byte=base + start,
            end_byte=base + end,
            next_byte_offset=base + end,
            total_lines=record.total_lines,
            total_bytes=record.total_bytes,
            has_more=base + end < record.total_bytes,
            status=record.status,
        )

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write to the execution store: {exc}") from None

    def _read_one(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        try:
            row: sqlite3.Row | None = self.db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the execution store: {exc}") from None
        return row
