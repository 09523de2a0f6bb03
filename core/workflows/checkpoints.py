"""mace checkpoints of a running job, mirrored to artifact storage, and the resume of a job whose
worker died: on the same machine from its folder, elsewhere from storage."""

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.artifacts.storage import Storage
from core.artifacts.storage_keys import checkpoint_key, checkpoint_pointer_key
from core.service.db import session_scope
from core.service.jobs import JobPart, add_warnings, get_job

logger = logging.getLogger(__name__)

# mace names checkpoints "<name>_run-<seed>_epoch-<N>.pt" (tools/checkpoint.py).
_CHECKPOINT = re.compile(r"_epoch-(\d+)\.pt$")


def checkpoint_epoch(path: Path) -> int:
    match = _CHECKPOINT.search(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not a mace checkpoint name")
    return int(match.group(1))


def newest_checkpoint(folder: Path) -> Path | None:
    found = [path for path in folder.glob("*_epoch-*.pt") if _CHECKPOINT.search(path.name)]
    return max(found, key=checkpoint_epoch, default=None)


class CheckpointSync:
    """Copies each new checkpoint of a job to storage once mace has finished writing it."""

    def __init__(self, storage: Storage, job_id: str, folder: Path) -> None:
        self.storage = storage
        self.job_id = job_id
        self.folder = folder
        self.pushed: str | None = None

    def push(self) -> bool:
        newest = newest_checkpoint(self.folder)
        if newest is None or newest.name == self.pushed:
            return False
        staged = self.folder.parent / "checkpoint-upload.pt"
        try:
            before = newest.stat()
            shutil.copyfile(newest, staged)
            changed = newest.stat().st_mtime_ns != before.st_mtime_ns
        except FileNotFoundError:  # mace replaced it meanwhile; the next one will be pushed
            return False
        # torch.save writes a zip whose central directory comes last: a checkpoint copied while
        # mace was still writing it is not a complete zip yet.
        if changed or not zipfile.is_zipfile(staged):
            return False
        self.storage.put_file(checkpoint_key(self.job_id), staged)
        pointer = self.folder.parent / "checkpoint-upload.json"
        pointer.write_text(json.dumps({"file": newest.name}), encoding="utf-8")
        self.storage.put_file(checkpoint_pointer_key(self.job_id), pointer)
        staged.unlink(missing_ok=True)
        self.pushed = newest.name
        logger.info("job=%s checkpoint %s stored", self.job_id, newest.name)
        return True

    def discard(self) -> None:
        for key in (checkpoint_key(self.job_id), checkpoint_pointer_key(self.job_id)):
            self.storage.delete(key)


def restore_checkpoint(storage: Storage, job_id: str, folder: Path) -> Path | None:
    """The newest checkpoint in the job's folder, fetched from storage when the folder lacks one
    (the job resumes on another machine)."""
    local = newest_checkpoint(folder)
    if local is not None or not storage.exists(checkpoint_pointer_key(job_id)):
        return local
    pointer = storage.fetch(
        checkpoint_pointer_key(job_id), folder.parent / "checkpoint-pointer.json"
    )
    name = json.loads(pointer.read_text(encoding="utf-8"))["file"]
    return storage.fetch(checkpoint_key(job_id), folder / Path(name).name)


def prepare_resume(
    sessions: sessionmaker[Session], storage: Storage, job_id: str, work_dir: Path, attempt: int
) -> int:
    """Before attempt > 1: restore the checkpoint, drop the epochs mace will run again, and
    tell the user. Returns the epoch mace restarts at (0 without a checkpoint)."""
    checkpoint = restore_checkpoint(storage, job_id, work_dir / "checkpoints")
    # mace's --restart_latest runs the checkpoint's own epoch again (start_epoch = its number).
    start = checkpoint_epoch(checkpoint) if checkpoint is not None else 0
    with session_scope(sessions) as session:
        _keep_epochs_before(session, job_id, start)
        where = f"its checkpoint of epoch {start}" if checkpoint else "the start (no checkpoint)"
        add_warnings(
            session,
            job_id,
            [f"attempt {attempt}: the previous worker stopped; training resumed from {where}"],
        )
    logger.warning("job=%s attempt=%d resumes at epoch %d", job_id, attempt, start)
    return start


def _keep_epochs_before(session: Session, job_id: str, start: int) -> None:
    with_epochs: tuple[JobPart, ...] = ("epochs",)
    job = get_job(session, job_id, include=with_epochs)
    job.epochs = [
        entry for entry in job.epochs if entry.get("epoch") is None or entry["epoch"] < start
    ]
    session.commit()
