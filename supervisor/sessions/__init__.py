"""Named sessions (a log of each session's executions) and heap tags."""

from supervisor.sessions.store import SNAPSHOT_FIELDS, SessionEntry, SessionStore

__all__ = ["SNAPSHOT_FIELDS", "SessionEntry", "SessionStore"]
