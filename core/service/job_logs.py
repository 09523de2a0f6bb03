"""A running job's mace-torch output, shipped by its worker to the database line by line.

The API streams the lines (GET /jobs/{id}/events?log=true) from the `log_lines` table, so it
never reads the worker's folder, which may be on another machine. Only the last
LOG_LINES_KEPT lines of a job are kept there; the whole log is stored as an artifact when the
job ends, and the worker's sweep deletes the lines of work that ended longer ago than
`log_lines_retention_seconds` (delete_ended_lines), so the table stays bounded.
"""

import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from core.artifacts.storage import Storage
from core.artifacts.storage_keys import mace_log_key
from core.service.db import session_scope
from core.service.jobs import updated_rows
from core.service.models import Evaluation, Job, LogLine, ReplaySet, utcnow

logger = logging.getLogger(__name__)

# Enough for a late subscriber to see what the job is doing; the rest is in the stored log.
LOG_LINES_KEPT = 200
# Bounds what one read takes of a long log, so the worker ships it in steps.
LOG_CHUNK_BYTES = 64 * 1024
# A line longer than this (a tensor dumped whole) is cut: the table holds lines, not files.
MAX_LINE_CHARS = 2_000


class LogTail:
    """New complete lines of a growing file, from `offset` on. Yields nothing while the file is
    absent (a job not started yet)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as stream:
                # Shorter than what was read: the job's folder was made afresh.
                if stream.seek(0, 2) < self.offset:
                    self.offset, self.partial = 0, b""
                stream.seek(self.offset)
                chunk = stream.read(LOG_CHUNK_BYTES)
        except OSError:
            return []
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


def append_lines(session: Session, owner_id: str, lines: list[str]) -> None:
    """Number the lines after the owner's last one and drop all but the last LOG_LINES_KEPT."""
    if not lines:
        return
    last = session.scalar(select(func.max(LogLine.seq)).where(LogLine.owner_id == owner_id)) or 0
    session.add_all(
        LogLine(owner_id=owner_id, seq=last + index, line=line[:MAX_LINE_CHARS])
        for index, line in enumerate(lines, start=1)
    )
    newest = last + len(lines)
    session.execute(
        delete(LogLine).where(LogLine.owner_id == owner_id, LogLine.seq <= newest - LOG_LINES_KEPT)
    )


def delete_ended_lines(session: Session, retention: timedelta) -> int:
    """Delete the lines of every job, evaluation and replay-set build that ended (finished_at)
    more than `retention` ago: their whole log is in storage; returns how many lines went."""
    cutoff = utcnow() - retention
    ended = union_all(
        *(
            select(table.id).where(table.finished_at < cutoff)
            for table in (Job, Evaluation, ReplaySet)
        )
    )
    result = session.execute(
        delete(LogLine)
        .where(LogLine.owner_id.in_(ended))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return updated_rows(result)


def lines_after(session: Session, owner_id: str, seq: int, limit: int = 500) -> list[LogLine]:
    """The owner's kept lines numbered after `seq`, oldest first."""
    return list(
        session.scalars(
            select(LogLine)
            .where(LogLine.owner_id == owner_id, LogLine.seq > seq)
            .order_by(LogLine.seq)
            .limit(limit)
        )
    )


class LogShipper:
    """Sends the new lines of a job's log file to the database; run by the job's worker."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, path: Path) -> None:
        self.sessions = sessions
        self.job_id = job_id
        # A resumed run on the same machine appends to the log the run before it shipped.
        self.tail = LogTail(path, offset=path.stat().st_size if path.is_file() else 0)

    def ship(self) -> None:
        try:
            while lines := self.tail.new_lines():
                with session_scope(self.sessions) as session:
                    append_lines(session, self.job_id, lines)
        except Exception:  # the database briefly away: the lines stay in the file and stored log
            logger.exception("job=%s log lines not shipped", self.job_id)

    def store(self, storage: Storage) -> str | None:
        """The whole log, as an artifact, once the job ended; None without a log."""
        self.ship()
        if not self.tail.path.is_file():
            return None
        key = mace_log_key(self.job_id)
        storage.put_file(key, self.tail.path)
        return key
