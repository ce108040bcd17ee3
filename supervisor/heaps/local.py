"""Snapshots as files in a local directory: ``<dir>/<aa>/<digest>``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import anyio

from supervisor.errors import HeapNotFound, StorageError
from supervisor.heaps.base import digest_of, verified


class LocalSnapshotStore:
    """Content-addressed files; a write goes to a temporary file, is fsynced, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check_writable(self) -> None:
        """Create the directory and prove a file can be written there, or raise naming it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise StorageError(
                f"heap directory {self.root} is not writable: {exc.strerror or exc}"
            ) from None

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    async def put(self, data: bytes) -> str:
        # Hashing a large snapshot takes milliseconds: not on the event loop.
        return await anyio.to_thread.run_sync(self._write, data)

    def _write(self, data: bytes) -> str:
        digest = digest_of(data)
        target = self._path(digest)
        if target.exists():
            return digest  # same name, same bytes
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StorageError(f"cannot store snapshot in {self.root}: {exc}") from None
        return digest

    async def get(self, digest: str) -> bytes:
        return await anyio.to_thread.run_sync(self._read, digest)

    def _read(self, digest: str) -> bytes:
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            raise HeapNotFound(f"heap not found: {digest}") from None
        except OSError as exc:
            raise StorageError(f"cannot read snapshot {digest}: {exc}") from None
        return verified(digest, data)

    async def exists(self, digest: str) -> bool:
        return await anyio.Path(self._path(digest)).exists()
