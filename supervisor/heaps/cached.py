"""A local, size-bounded write-through cache (diskcache) in front of another store."""

from __future__ import annotations

from pathlib import Path

import anyio
import diskcache

from supervisor.heaps.base import SnapshotStore, digest_of


class CachedSnapshotStore:
    """Reads hit the cache first (no remote request); writes go to both."""

    def __init__(self, inner: SnapshotStore, directory: Path, *, size_limit_bytes: int) -> None:
        self.inner = inner
        self.cache = diskcache.Cache(str(directory), size_limit=size_limit_bytes)

    async def put(self, data: bytes) -> str:
        digest = await self.inner.put(data)
        await anyio.to_thread.run_sync(self._remember, digest, data)
        return digest

    def _remember(self, digest: str, data: bytes) -> None:
        self.cache.set(digest, data)

    async def get(self, digest: str) -> bytes:
        cached = await anyio.to_thread.run_sync(self._recall, digest)
        if cached is not None:
            return cached
        data = await self.inner.get(digest)  # verified there
        await anyio.to_thread.run_sync(self._remember, digest, data)
        return data

    def _recall(self, digest: str) -> bytes | None:
        """The cached bytes if they still hash to ``digest``; a damaged entry is dropped."""
        cached = self.cache.get(digest)
        if not isinstance(cached, bytes):
            return None
        if digest_of(cached) == digest:
            return cached
        self.cache.delete(digest)  # the origin is asked again
        return None

    async def exists(self, digest: str) -> bool:
        if await anyio.to_thread.run_sync(self.cache.__contains__, digest):
            return True
        return await self.inner.exists(digest)

    def close(self) -> None:
        """Close the cache's database."""
        self.cache.close()
