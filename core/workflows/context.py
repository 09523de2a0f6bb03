"""What a worker (or the API) needs to run work: database sessions, artifact storage, the
foundation registry and where to work. Its own module so that jobs, evaluations and replay
sets all import it without importing each other."""

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.artifacts.storage import Storage, storage_from_settings
from core.config import Settings
from core.registry.foundation_store import FoundationStore
from core.registry.foundations import FoundationRegistry
from core.registry.model_sandbox import SandboxLimits
from core.science.cache import PredictionCache
from core.service.db import session_factory


@dataclass
class JobContext:
    sessions: sessionmaker[Session]
    storage: Storage
    registry: FoundationRegistry
    work_root: Path
    device: str = "cpu"
    cache: PredictionCache | None = None
    lease_seconds: float = 60.0
    max_attempts: int = 3
    progress_interval_s: float = 2.0


def context_from_settings(settings: Settings) -> JobContext:
    sessions = session_factory(settings.resolved_database_url, settings.pool_limits)
    storage = storage_from_settings(settings)
    return JobContext(
        sessions=sessions,
        storage=storage,
        registry=FoundationRegistry(
            settings.resolved_models_dir,
            offline=settings.offline,
            probe_timeout_s=settings.foundation_probe_timeout_s,
            store=FoundationStore(sessions, storage),
            sandbox=SandboxLimits(settings.model_sandbox_memory_mb, settings.model_sandbox_cpu_s),
        ),
        work_root=settings.data_dir / "work",
        device=settings.device,
        cache=PredictionCache(settings.data_dir / "cache", storage),
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.max_attempts,
        progress_interval_s=settings.progress_interval_s,
    )
