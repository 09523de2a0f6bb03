"""Artifacts in S3-compatible object storage (AWS S3, MinIO, Ceph), shared by every machine.

Processes that need a file on disk (mace-torch, ASE, a download) get it from a local cache
folder, refreshed when the object changed (checkpoints are overwritten under one key).

An object appears in the bucket only once S3 has all of it (a PUT, or the completion of a
multipart upload), so a write cut short is never listed. A write or delete that cannot reach the
server is tried again with growing pauses for `write_retry_seconds` (work would be lost
otherwise); a read that cannot reach it raises StorageUnavailableError at once (the API answers
503 rather than hold a request for minutes).
"""

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import boto3
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from core.artifacts.storage_keys import checked_key
from core.errors import ArtifactMissingError, StorageUnavailableError

logger = logging.getLogger(__name__)
_MISSING = {"404", "NoSuchKey", "NotFound"}
# What botocore raises once its own quick retries failed to reach the server: connection refused
# or reset, timeouts, a connection closed mid-transfer.
UNREACHABLE = (EndpointUnreachable, HTTPClientError)
# Pauses between write attempts: 1 s doubling up to this.
MAX_RETRY_PAUSE_S = 15.0
DEFAULT_WRITE_RETRY_S = 300.0
T = TypeVar("T")


class S3Storage:
    def __init__(
        self,
        bucket: str,
        cache_dir: Path,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        write_retry_seconds: float = DEFAULT_WRITE_RETRY_S,
    ) -> None:
        self.bucket = bucket
        self.write_retry_seconds = write_retry_seconds
        self.cache_dir = cache_dir.resolve()
        self.prefix = prefix.strip("/")
        self._bucket_ready = False
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )

    def _object(self, key: str) -> str:
        relative = checked_key(key).as_posix()
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def put_file(self, key: str, source: Path) -> None:
        def upload() -> None:
            self._ensure_bucket()
            # upload_file switches to a multipart upload for large files (models, checkpoints).
            self.client.upload_file(str(source), self.bucket, self._object(key))

        self._retrying(f"write of {key}", upload)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.write_retry_seconds
        pause = 1.0
        while True:
            try:
                return call()
            except UNREACHABLE as error:
                if time.monotonic() + pause > deadline:
                    raise _unavailable(what, error, self.write_retry_seconds) from error
                logger.warning(
                    "artifact storage unreachable: %s failed (%s); retrying in %.0f s",
                    what,
                    type(error).__name__,
                    pause,
                )
                time.sleep(pause)
                pause = min(2 * pause, MAX_RETRY_PAUSE_S)

    def _ensure_bucket(self) -> None:
        """A fresh object store (a new MinIO volume) gets its bucket on the first write."""
        if self._bucket_ready:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if _code(error) not in _MISSING | {"NoSuchBucket"}:
                raise
            self.client.create_bucket(Bucket=self.bucket)
        self._bucket_ready = True

    def fetch(self, key: str, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Download beside the target then rename, so a reader never sees half a file.
        partial = destination.with_name(destination.name + ".partial")
        try:
            self.client.download_file(self.bucket, self._object(key), str(partial))
        except UNREACHABLE as error:
            partial.unlink(missing_ok=True)
            raise _unavailable(f"read of {key}", error) from error
        except ClientError as error:
            partial.unlink(missing_ok=True)
            if _code(error) in _MISSING:
                raise ArtifactMissingError(f"artifact {key} is not in storage") from error
            raise
        partial.replace(destination)
        return destination

    def local_path(self, key: str) -> Path:
        etag = self._etag(key)
        if etag is None:
            raise ArtifactMissingError(f"artifact {key} is not in storage")
        cached = self.cache_dir / checked_key(key)
        stamp = cached.with_name(cached.name + ".etag")
        if cached.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == etag:
            return cached
        self.fetch(key, cached)
        stamp.write_text(json.dumps(etag))
        return cached

    def exists(self, key: str) -> bool:
        return self._etag(key) is not None

    def delete(self, key: str) -> None:
        def delete_object() -> None:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
            except ClientError as error:
                if _code(error) != "NoSuchBucket":
                    raise

        self._retrying(f"delete of {key}", delete_object)
        cached = self.cache_dir / checked_key(key)
        cached.unlink(missing_ok=True)
        cached.with_name(cached.name + ".etag").unlink(missing_ok=True)

    def _etag(self, key: str) -> str | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except UNREACHABLE as error:
            raise _unavailable(f"read of {key}", error) from error
        except ClientError as error:
            if _code(error) in _MISSING or _code(error) == "NoSuchBucket":
                return None
            raise
        return str(head["ETag"])


def _unavailable(what: str, error: Exception, waited_s: float = 0.0) -> StorageUnavailableError:
    after = f" after retrying for {waited_s:.0f} s" if waited_s else ""
    return StorageUnavailableError(
        f"artifact storage (S3) cannot be reached: {what} failed{after} "
        f"({type(error).__name__}); retry once it is back"
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
