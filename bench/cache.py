"""8. ``--cache-dir``: S3 requests and times of restores through the heap cache (moto S3)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from bench.plan import CACHE_GETS, Plan
from bench.procs import free_port, run_async
from bench.stats import median
from supervisor.heaps import CachedSnapshotStore, S3SnapshotStore, SnapshotStore


@dataclass
class CacheCheck:
    """A heap restored through the S3 cache: S3 requests counted, times of both paths."""

    gets: int
    heap_bytes: int
    put_requests: list[str]
    cached_requests: list[str]  # S3 requests made while restoring from the cache
    s3_requests: list[str]  # S3 requests of the uncached restores (for contrast)
    cached_ms: list[float]
    s3_ms: list[float]

    @property
    def ok(self) -> bool:
        return not self.cached_requests

    def as_json(self) -> dict[str, Any]:
        return {
            "restores": self.gets,
            "heap_bytes": self.heap_bytes,
            "s3_requests_during_cached_restores": len(self.cached_requests),
            "s3_requests_of_put": self.put_requests,
            "s3_requests_per_uncached_restore": (
                self.s3_requests[: len(self.s3_requests) // max(1, len(self.s3_ms))]
            ),
            "cached_restore_p50_ms": round(median(self.cached_ms), 3),
            "s3_restore_p50_ms": round(median(self.s3_ms), 3),
            "target_requests": 0,
            "pass": self.ok,
        }


async def _cache_restores(endpoint: str, cache_dir: Path, heap: bytes, reps: int) -> CacheCheck:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = "mcp-v8-bench"
    await anyio.to_thread.run_sync(partial(client.create_bucket, Bucket=bucket))
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    s3 = S3SnapshotStore(bucket, client=client)
    cached = CachedSnapshotStore(s3, cache_dir, size_limit_bytes=1 << 30)
    try:
        digest = await cached.put(heap)
        put_requests = list(calls)

        async def restore(store: SnapshotStore) -> float:
            # What the engine does for a run with an input heap: exists, then get.
            t0 = time.perf_counter()
            if not await store.exists(digest) or await store.get(digest) != heap:
                raise RuntimeError("the stored heap did not come back")
            return 1000 * (time.perf_counter() - t0)

        calls.clear()
        cached_ms = [await restore(cached) for _ in range(CACHE_GETS)]
        cached_requests = list(calls)
        calls.clear()
        s3_ms = [await restore(s3) for _ in range(reps)]
        s3_requests = list(calls)
    finally:
        cached.close()
    return CacheCheck(
        gets=CACHE_GETS,
        heap_bytes=len(heap),
        put_requests=put_requests,
        cached_requests=cached_requests,
        s3_requests=s3_requests,
        cached_ms=cached_ms,
        s3_ms=s3_ms,
    )


def measure_cache(tmp: Path, heap: bytes, plan: Plan) -> CacheCheck:
    """``--cache-dir``: restores of a cached heap, over a real S3-protocol server (moto)."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")  # moto's server logs every request
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        return run_async(
            partial(
                _cache_restores,
                f"http://127.0.0.1:{port}",
                tmp / "heap-cache",
                heap or os.urandom(6 * 1024 * 1024),
                plan.snapshot_reps,
            )
        )
    finally:
        server.stop()
        werkzeug.setLevel(level)
