"""Validation of what a client may ask for, shared by REST and MCP."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from supervisor.config import SandboxSettings
from supervisor.errors import InvalidRequest, PayloadTooLarge
from supervisor.heaps import check_digest

TIMEOUT_RANGE_S = (1, 300)
HEAP_RANGE_MB = (1, 16384)


MAX_SESSION_CHARS = 256
MAX_TAGS = 64
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 1024


@dataclass(frozen=True)
class RunRequest:
    """A validated request to run code."""

    code: str
    heap_memory_max_mb: int
    execution_timeout_secs: float
    heap: str | None = None
    session: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


def check_session(session: Any) -> str:
    """A session name: a non-empty string of printable characters, at most 256 long."""
    if not isinstance(session, str):
        raise InvalidRequest(f"session must be a string, got {type(session).__name__}")
    if not session or not session.strip():
        raise InvalidRequest("session must not be empty")
    if len(session) > MAX_SESSION_CHARS:
        raise InvalidRequest(
            f"session is {len(session)} characters long, over the limit of {MAX_SESSION_CHARS}"
        )
    if not session.isprintable():
        raise InvalidRequest("session must contain printable characters only")
    return session


def check_tags(tags: Any, field: str = "tags") -> dict[str, str]:
    """Tags: a JSON object of at most 64 string keys to string values."""
    if not isinstance(tags, dict):
        raise InvalidRequest(f"{field} must be an object of string keys to string values")
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"{field} has {len(tags)} entries, over the limit of {MAX_TAGS}")
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise InvalidRequest(f"{field} keys must be non-empty strings")
        if not isinstance(value, str):
            raise InvalidRequest(f"{field}[{key!r}] must be a string, got {type(value).__name__}")
        if len(key) > MAX_TAG_KEY_CHARS or len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidRequest(
                f"{field}[{key!r}] is too long (keys up to {MAX_TAG_KEY_CHARS} characters, "
                f"values up to {MAX_TAG_VALUE_CHARS})"
            )
    return dict(tags)


def check_tag_keys(keys: Any) -> list[str]:
    """A list of tag keys."""
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise InvalidRequest("keys must be a list of non-empty strings")
    return list(keys)


def _number(name: str, value: Any, low: float, high: float, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number, got {type(value).__name__}")
    if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    if integer and value != int(value):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}")
    return value


def build_run_request(
    settings: SandboxSettings,
    code: Any,
    heap_memory_max_mb: Any = None,
    execution_timeout_secs: Any = None,
    *,
    stateful: bool = False,
    heap: Any = None,
    session: Any = None,
    tags: Any = None,
) -> RunRequest:
    """Check a request's fields and fill in the server's defaults."""
    if not stateful:
        for name, value in (("heap", heap), ("session", session), ("tags", tags)):
            if value is not None:
                raise InvalidRequest(
                    f"{name} needs stateful mode; this server runs with --stateless"
                )
    if code is None:
        raise InvalidRequest("code is required")
    if not isinstance(code, str):
        raise InvalidRequest(f"code must be a string, got {type(code).__name__}")
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"code contains an unpaired surrogate at character {exc.start}; "
            "write it as an escape such as \\uD800 inside a string literal"
        ) from None
    if size > settings.max_code_bytes:
        raise PayloadTooLarge(
            f"code is {size} bytes, over the limit of {settings.max_code_bytes} bytes"
        )
    heap_mb = settings.heap_memory_max_mb
    if heap_memory_max_mb is not None:
        heap_mb = int(
            _number("heap_memory_max_mb", heap_memory_max_mb, *HEAP_RANGE_MB, integer=True)
        )
    timeout = settings.execution_timeout_s
    if execution_timeout_secs is not None:
        timeout = _number(
            "execution_timeout_secs", execution_timeout_secs, *TIMEOUT_RANGE_S, integer=False
        )
    return RunRequest(
        code=code,
        heap_memory_max_mb=heap_mb,
        execution_timeout_secs=float(timeout),
        heap=None if heap is None else check_digest(heap),
        session=None if session is None else check_session(session),
        tags=() if tags is None else tuple(check_tags(tags).items()),
    )
