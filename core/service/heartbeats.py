"""Worker heartbeats in the database, so that a dead worker is never silent.

Every worker writes its row every third of the job lease; readiness (GET /readyz) counts a worker
alive while its last heartbeat is younger than the lease, the same time after which the jobs it
held count as abandoned (core/service/leases.py).
"""

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core.service.db import session_scope
from core.service.models import WorkerHeartbeat, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerIdentity:
    worker_id: str
    hostname: str
    pid: int
    queues: str

    @classmethod
    def of_this_process(cls, queues: list[str]) -> "WorkerIdentity":
        hostname = socket.gethostname()
        pid = os.getpid()
        return cls(f"{hostname}:{pid}", hostname, pid, ",".join(queues))


def beat(session: Session, worker: WorkerIdentity) -> None:
    row = session.get(WorkerHeartbeat, worker.worker_id)
    if row is None:
        session.add(
            WorkerHeartbeat(
                worker_id=worker.worker_id,
                hostname=worker.hostname,
                pid=worker.pid,
                queues=worker.queues,
            )
        )
    else:
        row.last_seen_at = utcnow()
    session.commit()


def forget(session: Session, worker_id: str) -> None:
    """A worker shutting down cleanly removes its row at once (a dead one leaves it to age)."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == worker_id))
    session.commit()


def alive_workers(session: Session, within_seconds: float) -> list[WorkerHeartbeat]:
    since: datetime = utcnow() - timedelta(seconds=within_seconds)
    return list(
        session.scalars(
            select(WorkerHeartbeat)
            .where(WorkerHeartbeat.last_seen_at >= since)
            .order_by(WorkerHeartbeat.last_seen_at.desc())
        )
    )


class Heartbeat:
    """Writes this worker's heartbeat every `interval` seconds in a background thread."""

    def __init__(
        self, sessions: sessionmaker[Session], worker: WorkerIdentity, interval: float
    ) -> None:
        self.sessions = sessions
        self.worker = worker
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        try:
            with session_scope(self.sessions) as session:
                forget(session, self.worker.worker_id)
        except Exception:  # the database is away: the row ages out by itself
            logger.exception("worker=%s heartbeat row not removed", self.worker.worker_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def _beat(self) -> None:
        try:
            with session_scope(self.sessions) as session:
                beat(session, self.worker)
        except Exception:  # a database hiccup: the next beat retries within the lease
            logger.exception("worker=%s heartbeat failed", self.worker.worker_id)
