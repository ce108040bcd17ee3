"""Typed errors of the supervisor, each with a stable ``code``.

Hierarchy::

    McpV8Error
    ├── ConfigError          bad flags or settings (CLI exit status 2)
    ├── InvalidRequest       a request that names something wrong (HTTP 400)
    │   └── PayloadTooLarge  a body or code over its size cap (HTTP 413)
    ├── NotFound             an unknown execution id (HTTP 404)
    │   └── HeapNotFound     no snapshot is stored under that hash
    ├── CorruptSnapshot      stored bytes do not match their hash (HTTP 422)
    ├── SandboxUnavailable   Deno cannot be started (HTTP 503)
    └── StorageError         the execution store failed (HTTP 503)

What *user code* did (threw, timed out, ran out of memory) is never one of
these: it is an execution result with a status. Edges map these errors once
(REST JSON body, MCP error); anything else is logged and reported to clients
only as an incident id.
"""

from __future__ import annotations


class McpV8Error(Exception):
    """Base of every error the supervisor reports on purpose."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(McpV8Error):
    """Flags or settings that cannot work together."""

    code = "config"
    http_status = 500


class InvalidRequest(McpV8Error):
    """A request with a missing, malformed or out-of-range field."""

    code = "invalid_request"
    http_status = 400


class PayloadTooLarge(InvalidRequest):
    """A request body or code larger than its configured cap."""

    code = "payload_too_large"
    http_status = 413


class NotFound(McpV8Error):
    """Something named by the request does not exist."""

    code = "not_found"
    http_status = 404


class HeapNotFound(NotFound):
    """No snapshot is stored under the requested hash."""

    code = "heap_not_found"


class CorruptSnapshot(McpV8Error):
    """Stored snapshot bytes whose SHA-256 is not their name: never executed."""

    code = "corrupt_snapshot"
    http_status = 422


class SandboxUnavailable(McpV8Error):
    """The Deno binary is missing, broken, or will not speak the protocol."""

    code = "sandbox_unavailable"
    http_status = 503


class StorageError(McpV8Error):
    """The execution store could not be read or written."""

    code = "storage"
    http_status = 503
