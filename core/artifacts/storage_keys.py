"""Artifact keys: relative POSIX paths that stay inside the store, whatever the backend.

Its own module so that both backends (core/artifacts/storage.py, core/artifacts/s3_storage.py)
import it and neither imports the other at module level (issue 19: no import circles).
"""

from pathlib import PurePosixPath


def checked_key(key: str) -> PurePosixPath:
    relative = PurePosixPath(key)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"storage key must be relative and stay inside the store: {key!r}")
    return relative
