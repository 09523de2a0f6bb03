"""Receive an upload without holding it in memory: chunks go to a temporary file under a size
limit, and a gzip-compressed file is unpacked under the same limit, so a gzip bomb stops at it.
"""

import gzip
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import InvalidDatasetError, UploadTooLargeError

CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


class UploadSpool:
    """One upload on its way to disk; every file it creates is removed when its scope ends."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.size = 0
        self._files: list[Path] = []
        self.path = self._new_file()
        self._stream = self.path.open("wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadTooLargeError(
                f"the upload exceeds the limit of {self.limit} bytes (MLFT_MAX_UPLOAD_BYTES)"
            )
        self._stream.write(chunk)

    def finish(self) -> Path:
        """The uploaded file as plain text: the spool itself, or its gzip content unpacked."""
        self._stream.close()
        if self.size == 0:
            raise InvalidDatasetError("the uploaded file is empty")
        with self.path.open("rb") as stream:
            compressed = stream.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        return self._gunzip() if compressed else self.path

    def _gunzip(self) -> Path:
        target = self._new_file()
        written = 0
        try:
            with gzip.open(self.path, "rb") as source, target.open("wb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > self.limit:
                        raise UploadTooLargeError(
                            f"the gzip file decompresses to more than {self.limit} bytes, the "
                            "upload limit (MLFT_MAX_UPLOAD_BYTES)"
                        )
                    out.write(chunk)
        except (OSError, EOFError, zlib.error) as error:
            raise InvalidDatasetError(
                f"the file starts like gzip but cannot be decompressed: {error}"
            ) from error
        return target

    def _new_file(self) -> Path:
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".upload", delete=False) as f:
            path = Path(f.name)
        self._files.append(path)
        return path

    def discard(self) -> None:
        self._stream.close()
        for path in self._files:
            path.unlink(missing_ok=True)


@contextmanager
def upload_spool(folder: Path, limit: int) -> Iterator[UploadSpool]:
    folder.mkdir(parents=True, exist_ok=True)
    spool = UploadSpool(folder, limit)
    try:
        yield spool
    finally:
        spool.discard()


# The datasets table's name column.
MAX_NAME_CHARS = 255


def stored_name(filename: str | None) -> str:
    """The dataset's name: what the user called it, without folders, control characters (NUL
    included) or the compression suffix, cut to what the name column holds (keeping the
    extension)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(character for character in name if character.isprintable())
    name = name.removesuffix(".gz").removesuffix(".gzip")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if not dot or len(extension) > 16:
            stem, extension = name, ""
        keep = MAX_NAME_CHARS - len(dot + extension)
        name = stem[:keep] + (dot + extension if extension else "")
    return name or "dataset.extxyz"
