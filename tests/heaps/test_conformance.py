"""One suite, every snapshot backend: local directory, S3, and S3 behind the local cache."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.errors import CorruptSnapshot, HeapNotFound, InvalidRequest, StorageError
from supervisor.heaps import (
    CachedSnapshotStore,
    LocalSnapshotStore,
    S3SnapshotStore,
    SnapshotStore,
    check_digest,
)
from tests.heaps.conftest import s3_client

pytestmark = pytest.mark.anyio

BACKENDS = ["local", "s3", "cached-s3"]


class Backend:
    """A store under test, plus a way to tamper with what it holds underneath."""

    def __init__(self, store: SnapshotStore, tamper: Any) -> None:
        self.store = store
        self.tamper = tamper


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    kind: str = request.param
    if kind == "local":
        local = LocalSnapshotStore(tmp_path / "heaps")
        local.check_writable()

        def tamper_local(digest: str, data: bytes) -> None:
            (tmp_path / "heaps" / digest[:2] / digest).write_bytes(data)

        yield Backend(local, tamper_local)
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket: str = request.getfixturevalue("bucket")
    client = s3_client(endpoint)
    s3 = S3SnapshotStore(bucket, client=client)

    def tamper_s3(digest: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"heaps/{digest}", Body=data)

    if kind == "s3":
        yield Backend(s3, tamper_s3)
        return
    cached = CachedSnapshotStore(s3, tmp_path / "cache", size_limit_bytes=1 << 26)

    def tamper_both(digest: str, data: bytes) -> None:
        tamper_s3(digest, data)
        cached.cache.set(digest, data)

    yield Backend(cached, tamper_both)
    cached.close()


# A small snapshot, and one large enough to be hashed while it is written.
SIZES = [pytest.param(1000, id="10kB"), pytest.param(300_000, id="3MB")]


@pytest.mark.parametrize("repeat", SIZES)
async def test_put_returns_the_sha256_of_the_bytes_and_get_returns_them(
    backend: Backend, repeat: int
) -> None:
    data = b"\x00snapshot\xff" * repeat
    digest = await backend.store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert await backend.store.get(digest) == data
    assert await backend.store.exists(digest)


async def test_identical_bytes_are_stored_once_under_one_name(backend: Backend) -> None:
    assert await backend.store.put(b"same") == await backend.store.put(b"same")


@pytest.mark.parametrize("repeat", SIZES)
async def test_concurrent_writers_of_the_same_snapshot_all_succeed(
    backend: Backend, repeat: int
) -> None:
    data = b"raced" * 10 * repeat
    digests: list[str] = []

    async def write() -> None:
        digests.append(await backend.store.put(data))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(write)
    assert len(set(digests)) == 1
    assert await backend.store.get(digests[0]) == data


async def test_an_unknown_heap_is_not_found(backend: Backend) -> None:
    missing = "0" * 64
    with pytest.raises(HeapNotFound, match="heap not found"):
        await backend.store.get(missing)
    assert not await backend.store.exists(missing)


async def test_bytes_that_do_not_match_their_name_are_refused_as_corrupt(
    backend: Backend,
) -> None:
    digest = await backend.store.put(b"genuine")
    backend.tamper(digest, b"tampered")
    with pytest.raises(CorruptSnapshot, match="corrupt snapshot"):
        await backend.store.get(digest)


async def test_an_empty_snapshot_round_trips(backend: Backend) -> None:
    digest = await backend.store.put(b"")
    assert await backend.store.get(digest) == b""


@pytest.mark.parametrize(
    "bad", ["", "abc", "G" * 64, "A" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, 5, None]
)
def test_malformed_heap_ids_are_refused_naming_the_rule(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="64 lowercase hex"):
        check_digest(bad)


@pytest.mark.parametrize("repeat", SIZES)
async def test_the_local_store_leaves_only_snapshots_behind(tmp_path: Path, repeat: int) -> None:
    store = LocalSnapshotStore(tmp_path / "heaps")
    first = await store.put(b"a" * 11 * repeat)
    second = await store.put(b"b" * 11 * repeat)
    assert await store.put(b"a" * 11 * repeat) == first
    files = sorted(p.relative_to(tmp_path / "heaps") for p in (tmp_path / "heaps").rglob("*"))
    assert [str(p) for p in files if p.name.startswith(".")] == []
    assert {p.name for p in files if len(p.parts) == 2} == {first, second}


@pytest.mark.parametrize("repeat", SIZES)
async def test_a_snapshot_that_cannot_be_written_is_a_storage_error(
    tmp_path: Path, repeat: int
) -> None:
    (tmp_path / "taken").write_text("a file where the directory should be")
    store = LocalSnapshotStore(tmp_path / "taken")
    with pytest.raises(StorageError, match=r"cannot store snapshot in .*taken"):
        await store.put(b"x" * 11 * repeat)


def test_an_unwritable_heap_directory_is_reported_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match=str(blocker)):
        LocalSnapshotStore(blocker / "heaps").check_writable()


async def test_an_unreachable_s3_fails_with_a_storage_error_and_keeps_the_cache(
    tmp_path: Path, s3_env: None
) -> None:
    dead = S3SnapshotStore("nowhere", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageError, match="nowhere"):
        await dead.put(b"x")
    with pytest.raises(StorageError):
        await dead.get("0" * 64)


async def test_a_cached_heap_is_restored_without_any_s3_request(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    client = s3_client(s3_endpoint)
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    cached = CachedSnapshotStore(
        S3SnapshotStore(bucket, client=client), tmp_path / "cache", size_limit_bytes=1 << 26
    )
    digest = await cached.put(b"state" * 100)
    assert calls == ["PutObject"]
    calls.clear()
    assert await cached.get(digest) == b"state" * 100
    assert calls == []
    cached.close()


async def test_a_heap_missing_from_the_cache_is_fetched_from_s3_and_then_cached(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    client = s3_client(s3_endpoint)
    digest = await S3SnapshotStore(bucket, client=client).put(b"elsewhere")
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    cached = CachedSnapshotStore(
        S3SnapshotStore(bucket, client=client), tmp_path / "cache", size_limit_bytes=1 << 26
    )
    assert await cached.get(digest) == b"elsewhere"
    assert await cached.get(digest) == b"elsewhere"
    assert calls == ["GetObject"]
    cached.close()
