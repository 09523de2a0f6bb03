"""One interface for artifacts (datasets, models, reports): a local folder by default.

Keys are relative POSIX paths such as ``datasets/<id>/data.extxyz``. Workers on other machines
share artifacts through an object-store implementation of the same interface.
"""

import shutil
from pathlib import Path, PurePosixPath
from typing import Protocol

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
        relative = PurePosixPath(key)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"storage key must be relative and stay inside the store: {key!r}")
        return self.root / relative

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy to a temporary name then rename, so a reader never sees half a file.
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)

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
            if parent == self.root or any(parent.iterdir()):
                break
            parent.rmdir()
