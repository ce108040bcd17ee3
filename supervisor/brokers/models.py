"""Requests the sandbox makes of the supervisor, and the answers, as brokers see them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FsOp = Literal[
    "readFile",
    "writeFile",
    "appendFile",
    "readdir",
    "stat",
    "mkdir",
    "rm",
    "rename",
    "copyFile",
    "exists",
]


@dataclass(frozen=True)
class FetchRequest:
    """``fetch(url, {method, headers, body})`` as the user's code made it."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class FetchResponse:
    """What the broker got back (after following allowed redirects)."""

    status: int
    status_text: str
    url: str
    redirected: bool
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class FsRequest:
    """One ``fs`` call of the user's code."""

    op: FsOp
    path: str
    destination: str | None = None
    recursive: bool = False
    encoding: str | None = None  # "utf-8" (default for reads) or "buffer"
    data: bytes = b""


@dataclass(frozen=True)
class FsStat:
    """``fs.stat`` results."""

    size: int
    is_file: bool
    is_directory: bool
    is_symlink: bool
    mtime_ms: float
    atime_ms: float
    ctime_ms: float
    mode: int


@dataclass(frozen=True)
class FsResponse:
    """The result of an ``fs`` call: bytes, names, a stat, a boolean, or nothing."""

    data: bytes | None = None
    names: tuple[str, ...] | None = None
    stat: FsStat | None = None
    exists: bool | None = None


class BrokerError(Exception):
    """A failed capability call, reported to the user's code as a JS Error.

    ``code`` is Node-like (``ENOENT``, ``EACCES``...) or ``"EPOLICY"`` for a
    denial (whose message contains "denied by policy"); ``path`` names the file.
    (A plain exception, not a frozen dataclass: context managers must be able
    to set its traceback when they re-raise it.)
    """

    def __init__(
        self,
        code: str,
        message: str,
        path: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.extra = extra or {}

    def __str__(self) -> str:
        return self.message


def denial_detail(reason: str) -> str:
    """``": why"`` for a denial message, without repeating "denied by policy"."""
    reason = reason.removeprefix("denied by policy").lstrip(": ").strip()
    return f": {reason}" if reason else ""
