"""Snapshots as files in a local directory: ``<dir>/<aa>/<digest>``."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

import anyio

from supervisor.errors import HeapNotFound, StorageError
from supervisor.heaps.base import digest_of, verified

# From this size on, a snapshot is hashed while it is written (~2 ms saved for
# 4 MB). Smaller ones are hashed first, which skips the write when the same
# bytes are stored already.
_HASH_WHILE_WRITING_BYTES = 1024 * 1024


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
        if len(data) < _HASH_WHILE_WRITING_BYTES:
            return await anyio.to_thread.run_sync(self._write, data)
        return await anyio.to_thread.run_sync(self._hash_while_writing, data)

    def _write(self, data: bytes) -> str:
        """Hash first, then write unless the same bytes are stored already."""
        digest = digest_of(data)
        if self._path(digest).exists():
            return digest  # same name, same bytes
        return self._publish(self._write_temporary(data), digest)

    def _hash_while_writing(self, data: bytes) -> str:
        """Hash in a second thread while the bytes go to a temporary file (both
        release the GIL); the digest is only needed to name the file."""
        digests: list[str] = []
        hasher = threading.Thread(target=lambda: digests.append(digest_of(data)))
        hasher.start()
        try:
            temporary = self._write_temporary(data)
        finally:
            hasher.join()
        return self._publish(temporary, digests[0])

    def _write_temporary(self, data: bytes) -> str:
        """``data`` in a new, fsynced file beside the snapshots; returns its path."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise StorageError(f"cannot store snapshot in {self.root}: {exc}") from None
        return temporary

    def _publish(self, temporary: str, digest: str) -> str:
        """Rename a temporary file to its digest (atomic; the same bytes may be there already)."""
        target = self._path(digest)
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(temporary, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
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
