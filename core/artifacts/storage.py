"""One interface for artifacts (datasets, models, reports, checkpoints): a local folder by
default, S3-compatible object storage (core/artifacts/s3_storage.py) when a bucket is configured.

Keys are relative POSIX paths such as ``datasets/<id>/data.extxyz``. Workers on other machines
share artifacts through the object store; `local_path` gives a file on this machine's disk
(mace-torch and ASE read paths), from a cache folder when the store is remote.
"""

import shutil
from pathlib import Path
from typing import Protocol

from core.artifacts.atomic_files import copy_atomically
from core.artifacts.storage_keys import checked_key
from core.config import Settings
from core.errors import ArtifactMissingError


class Storage(Protocol):
    def put_file(self, key: str, source: Path) -> None: ...

    def fetch(self, key: str, destination: Path) -> Path: ...

    def local_path(self, key: str) -> Path: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    def put_file(self, key: str, source: Path) -> None:
        copy_atomically(source, self._path(key))

    def fetch(self, key: str, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.local_path(key), destination)
        return destination

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ArtifactMissingError(f"artifact {key} is not in storage")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Remove the object's folder when it became empty, so a rejected upload leaves nothing.
        for parent in path.parents:
            if parent == self.root or (parent.is_dir() and any(parent.iterdir())):
                break
            if parent.is_dir():
                parent.rmdir()


def storage_from_settings(settings: Settings) -> Storage:
    """S3-compatible object storage when a bucket is configured, a local folder otherwise."""
    if settings.s3_bucket is None:
        return LocalStorage(settings.data_dir / "artifacts")
    from core.artifacts.s3_storage import S3Storage  # boto3 is only imported where it is used

    return S3Storage(
        settings.s3_bucket,
        settings.data_dir / "cache" / "artifacts",
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=(
            settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None
        ),
        prefix=settings.s3_prefix,
        write_retry_seconds=settings.s3_write_retry_seconds,
    )
