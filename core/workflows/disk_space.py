"""A worker's disk running full, named for what it is whatever raised it: mace-torch's own error
(a checkpoint's torch.save cut short, a traceback its full log could not hold) seldom says so."""

import errno
import os
import shutil
import socket
from pathlib import Path

from core.errors import DiskFullError

# Work that failed with less free space than this where it works failed for want of disk.
NEARLY_FULL_BYTES = 16 * 1024 * 1024
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


def disk_full_error(folder: Path, error: BaseException) -> DiskFullError | None:
    """The disk-full failure of work in `folder` that raised `error`; None when the disk is not
    why it failed."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    usage = shutil.disk_usage(existing)
    if not (_out_of_space(error) or usage.free < NEARLY_FULL_BYTES):
        return None
    disk = mount_point(existing)
    return DiskFullError(
        f"the disk of worker {socket.gethostname()} is full: {disk} has "
        f"{usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.0f} MB (this work's folder "
        f"{folder} was on it and is removed); free space there or give the worker a larger "
        f"disk, then submit again. The error: {type(error).__name__}: {error}"
    )


def _out_of_space(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if NO_SPACE in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def mount_point(path: Path) -> Path:
    """The folder the disk holding `path` is mounted on."""
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path
