"""Session logs and heap tags, in an embedded SQLite database.

The database lives at ``<session-db-path>/sessions.sqlite3`` (the path is a
directory, as the original's sled database was). WAL journal,
``synchronous=NORMAL``: every commit survives a crash of the server.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor.db import connect, transaction
from supervisor.errors import StorageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS session_log (
    session TEXT NOT NULL,
    idx INTEGER NOT NULL,
    input_heap TEXT,
    output_heap TEXT NOT NULL,
    code TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS heap_tags (
    heap TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (heap, key)
);
CREATE INDEX IF NOT EXISTS heap_tags_by_pair ON heap_tags (key, value);
"""

SNAPSHOT_FIELDS = ("index", "input_heap", "output_heap", "code", "timestamp")


@dataclass(frozen=True, kw_only=True)
class SessionEntry:
    """One execution of a named session."""

    index: int
    input_heap: str | None
    output_heap: str
    code: str
    timestamp: str


class SessionStore:
    """Append-only session logs and replaceable heap tags."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "sessions.sqlite3"
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Create or open the database; raise :class:`StorageError` naming the path."""
        try:
            db = connect(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the session database at {self.path}: {exc}") from None
        self._db = db

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError("the session database is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with transaction(self.db) as db:
                yield db
        except sqlite3.Error as exc:
            raise StorageError(f"session database error: {exc}") from None

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return list(self.db.execute(sql, params))
        except sqlite3.Error as exc:
            raise StorageError(f"session database error: {exc}") from None

    # --- sessions ---------------------------------------------------------

    def append(
        self, session: str, *, input_heap: str | None, output_heap: str, code: str, timestamp: str
    ) -> int:
        """Log one execution of ``session``; returns its index (from 1)."""
        with self._transaction() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(idx), 0) FROM session_log WHERE session = ?", (session,)
            ).fetchone()
            db.execute(
                "INSERT INTO session_log VALUES (?,?,?,?,?,?)",
                (session, last + 1, input_heap, output_heap, code, timestamp),
            )
        return int(last) + 1

    def sessions(self) -> list[str]:
        """Every session name, sorted."""
        return [
            str(row[0])
            for row in self._query("SELECT DISTINCT session FROM session_log ORDER BY session")
        ]

    def entries(self, session: str) -> list[SessionEntry]:
        """The log of one session, oldest first."""
        rows = self._query(
            "SELECT idx, input_heap, output_heap, code, timestamp FROM session_log "
            "WHERE session = ? ORDER BY idx",
            (session,),
        )
        return [
            SessionEntry(
                index=int(r[0]),  # type: ignore[call-overload]
                input_heap=r[1],  # type: ignore[arg-type]
                output_heap=str(r[2]),
                code=str(r[3]),
                timestamp=str(r[4]),
            )
            for r in rows
        ]

    # --- heap tags --------------------------------------------------------

    def tags(self, heap: str) -> dict[str, str]:
        """The tags of a heap (empty if it has none)."""
        rows = self._query("SELECT key, value FROM heap_tags WHERE heap = ? ORDER BY key", (heap,))
        return {str(k): str(v) for k, v in rows}

    def set_tags(self, heap: str, tags: Mapping[str, str]) -> None:
        """Replace the tags of a heap."""
        with self._transaction() as db:
            db.execute("DELETE FROM heap_tags WHERE heap = ?", (heap,))
            db.executemany(
                "INSERT INTO heap_tags VALUES (?,?,?)", [(heap, k, v) for k, v in tags.items()]
            )

    def delete_tags(self, heap: str, keys: list[str]) -> None:
        """Remove some tags of a heap."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM heap_tags WHERE heap = ? AND key = ?", [(heap, k) for k in keys]
            )

    def heaps_with(self, tags: Mapping[str, str]) -> list[str]:
        """Heaps whose tags contain every given pair (all tagged heaps for no pairs)."""
        if not tags:
            return [
                str(r[0]) for r in self._query("SELECT DISTINCT heap FROM heap_tags ORDER BY heap")
            ]
        clauses = " OR ".join("(key = ? AND value = ?)" for _ in tags)
        params: list[object] = [x for pair in tags.items() for x in pair]
        rows = self._query(
            f"SELECT heap FROM heap_tags WHERE {clauses} GROUP BY heap "
            "HAVING COUNT(*) = ? ORDER BY heap",
            (*params, len(tags)),
        )
        return [str(r[0]) for r in rows]
