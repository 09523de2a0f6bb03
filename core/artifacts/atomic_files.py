"""Files written whole or not at all: to a name of the writer's own, then renamed into place, so
a reader never sees half a file and processes writing the same file at once (workers sharing a
cache, API processes installing the demo foundation) never trip over each other's copy."""

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(partial)` to a writer-own name beside `path`, then rename it to `path`. The partial
    name keeps `path`'s suffix (numpy's savers append theirs to a name without it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex}.partial{path.suffix}")
    write(partial)
    partial.replace(path)


def copy_atomically(source: Path, path: Path) -> None:
    write_atomically(path, lambda partial: shutil.copyfile(source, partial))
