"""Content-addressed snapshot storage: the interface and what every backend shares."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from supervisor.errors import CorruptSnapshot, InvalidRequest

_DIGEST = re.compile(r"[0-9a-f]{64}")


def digest_of(data: bytes) -> str:
    """The name of stored bytes: their SHA-256, as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: object, field: str = "heap") -> str:
    """A heap id as given by a client, or :class:`InvalidRequest` naming what is wrong."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        shown = digest if isinstance(digest, str) and len(digest) <= 80 else type(digest).__name__
        raise InvalidRequest(
            f"{field} must be 64 lowercase hex characters (a SHA-256), got {shown!r}"
        )
    return digest


def verified(digest: str, data: bytes) -> bytes:
    """``data`` if its SHA-256 is ``digest``; otherwise :class:`CorruptSnapshot`."""
    actual = digest_of(data)
    if actual != digest:
        raise CorruptSnapshot(
            f"corrupt snapshot: the bytes stored as {digest} hash to {actual}; not executed"
        )
    return data


class SnapshotStore(Protocol):
    """Where snapshots live. Writes are atomic and idempotent; reads verify the hash."""

    async def put(self, data: bytes) -> str:
        """Store ``data`` under its SHA-256 and return the digest."""
        ...

    async def get(self, digest: str) -> bytes:
        """The bytes stored under ``digest``.

        Raises :class:`HeapNotFound`, :class:`CorruptSnapshot` or :class:`StorageError`.
        """
        ...

    async def exists(self, digest: str) -> bool:
        """Whether something is stored under ``digest`` (not verified)."""
        ...
