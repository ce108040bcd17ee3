"""Validation of what a client may ask for, shared by REST and MCP."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from supervisor.config import SandboxSettings
from supervisor.errors import InvalidRequest, PayloadTooLarge

TIMEOUT_RANGE_S = (1, 300)
HEAP_RANGE_MB = (1, 16384)


@dataclass(frozen=True)
class RunRequest:
    """A validated request to run code."""

    code: str
    heap_memory_max_mb: int
    execution_timeout_secs: float


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
) -> RunRequest:
    """Check a request's fields and fill in the server's defaults."""
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
    heap = settings.heap_memory_max_mb
    if heap_memory_max_mb is not None:
        heap = int(_number("heap_memory_max_mb", heap_memory_max_mb, *HEAP_RANGE_MB, integer=True))
    timeout = settings.execution_timeout_s
    if execution_timeout_secs is not None:
        timeout = _number(
            "execution_timeout_secs", execution_timeout_secs, *TIMEOUT_RANGE_S, integer=False
        )
    return RunRequest(code=code, heap_memory_max_mb=heap, execution_timeout_secs=float(timeout))
