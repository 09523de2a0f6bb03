"""What readiness and the metrics endpoint report: checks of the database and the artifact store,
jobs by state, and how long training epochs take."""

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.artifacts.storage import Storage
from core.artifacts.storage_keys import readiness_probe_key
from core.service.heartbeats import alive_workers
from core.service.models import Job, JobState, new_id

# The epochs of this many most recently updated jobs feed the epoch-time histogram.
EPOCH_TIME_JOBS = 200


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = "ok"


class NotReady(Exception):
    """A dependency answered, but says the service cannot do its work; the message says why."""


def run_check(name: str, probe: Callable[[], None]) -> Check:
    try:
        probe()
    except NotReady as error:
        return Check(name, False, str(error))
    except Exception as error:  # any failure means "not ready", with its reason
        return Check(name, False, f"{type(error).__name__}: {error}"[:300])
    return Check(name, True)


def database_probe(sessions: sessionmaker[Session]) -> Callable[[], None]:
    def probe() -> None:
        with sessions() as session:
            session.execute(text("SELECT 1"))

    return probe


def workers_probe(sessions: sessionmaker[Session], lease_seconds: float) -> Callable[[], None]:
    """At least one worker sent a heartbeat within the job lease (core/service/heartbeats.py)."""

    def probe() -> None:
        with sessions() as session:
            if not alive_workers(session, lease_seconds):
                raise NotReady(
                    f"no worker alive: none sent a heartbeat in the last {lease_seconds:g} s"
                )

    return probe


def storage_probe(storage: Storage) -> Callable[[], None]:
    """Writes, finds and deletes a small object: the store is there and writable."""

    def probe() -> None:
        key = readiness_probe_key(new_id())
        with tempfile.TemporaryDirectory(prefix="mlft-ready-") as folder:
            source = Path(folder) / "probe"
            source.write_bytes(b"ok")
            storage.put_file(key, source)
        try:
            if not storage.exists(key):
                raise RuntimeError("a written object cannot be found")
        finally:
            storage.delete(key)

    return probe


def jobs_by_state(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    return {state.value: int(counts.get(state, 0)) for state in JobState}


def recent_epoch_seconds(session: Session, jobs: int = EPOCH_TIME_JOBS) -> list[float]:
    """Wall time of each recorded training epoch of the most recently updated jobs."""
    rows = session.scalars(select(Job.epochs).order_by(Job.updated_at.desc()).limit(jobs))
    return [
        float(entry["seconds"])
        for epochs in rows
        for entry in epochs or []
        if isinstance(entry, dict) and isinstance(entry.get("seconds"), int | float)
    ]


def histogram(values: list[float], bounds: tuple[float, ...]) -> list[tuple[str, int]]:
    """Cumulative bucket counts in Prometheus' form, ending with +Inf."""
    counts = Counter(next((b for b in bounds if v <= b), float("inf")) for v in values)
    buckets, running = [], 0
    for bound in (*bounds, float("inf")):
        running += counts.get(bound, 0)
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return buckets
