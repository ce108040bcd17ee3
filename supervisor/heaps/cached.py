"""A local, size-bounded write-through cache (diskcache) in front of another store."""

from __future__ import annotations

from pathlib import Path

import anyio
import diskcache

from supervisor.heaps.base import SnapshotStore, digest_of, verified


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
        cached = await anyio.to_thread.run_sync(self.cache.get, digest)
        if isinstance(cached, bytes):
            if digest_of(cached) == digest:
                return cached
            # A damaged cache entry is dropped and the origin asked again.
            await anyio.to_thread.run_sync(self.cache.delete, digest)
        data = verified(digest, await self.inner.get(digest))
        await anyio.to_thread.run_sync(self._remember, digest, data)
        return data

    async def exists(self, digest: str) -> bool:
        if await anyio.to_thread.run_sync(self.cache.__contains__, digest):
            return True
        return await self.inner.exists(digest)

    def close(self) -> None:
        """Close the cache's database."""
        self.cache.close()
