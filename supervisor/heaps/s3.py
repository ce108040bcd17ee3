"""Snapshots in an S3 bucket (or any S3-compatible server).

Credentials and region come the AWS way (environment, profiles, instance
roles); ``AWS_ENDPOINT_URL_S3`` or ``--s3-endpoint-url`` point at another
server. Writes are conditional (``If-None-Match: *``), so concurrent writers of
the same snapshot are safe and an existing object is never overwritten.
"""

from __future__ import annotations

from typing import Any

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from supervisor.errors import HeapNotFound, StorageError
from supervisor.heaps.base import digest_of, verified

_MISSING = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


class S3SnapshotStore:
    """Objects named ``<prefix><digest>`` in one bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "heaps/",
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
            ),
        )

    def _key(self, digest: str) -> str:
        return f"{self.prefix}{digest}"

    async def put(self, data: bytes) -> str:
        return await anyio.to_thread.run_sync(self._put, data)

    def _put(self, data: bytes) -> str:
        digest = digest_of(data)  # in the worker thread, as the upload
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(digest), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _EXISTS:
                return digest  # already there: same name, same bytes
            raise StorageError(f"cannot store snapshot in s3://{self.bucket}: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach S3 bucket {self.bucket}: {exc}") from None
        return digest

    async def get(self, digest: str) -> bytes:
        return await anyio.to_thread.run_sync(self._get, digest)

    def _get(self, digest: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise HeapNotFound(f"heap not found: {digest}") from None
            raise StorageError(f"cannot read snapshot from s3://{self.bucket}: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach S3 bucket {self.bucket}: {exc}") from None
        return verified(digest, body)

    async def exists(self, digest: str) -> bool:
        return await anyio.to_thread.run_sync(self._exists, digest)

    def _exists(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise StorageError(f"cannot read s3://{self.bucket}: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach S3 bucket {self.bucket}: {exc}") from None
        return True
