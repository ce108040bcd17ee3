"""Content-addressed heap snapshot storage: local directory, S3, and a local cache for S3."""

from supervisor.heaps.base import SnapshotStore, check_digest, digest_of, verified
from supervisor.heaps.cached import CachedSnapshotStore
from supervisor.heaps.local import LocalSnapshotStore
from supervisor.heaps.s3 import S3SnapshotStore

__all__ = [
    "CachedSnapshotStore",
    "LocalSnapshotStore",
    "S3SnapshotStore",
    "SnapshotStore",
    "check_digest",
    "digest_of",
    "verified",
]
