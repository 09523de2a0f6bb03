"""Execute one queued job end to end: the job row and artifact store around core.training."""

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.cache import PredictionCache
from core.catalog import get_dataset
from core.config import Settings
from core.db import session_factory, session_scope
from core.errors import MlftError
from core.foundations import FoundationRegistry
from core.jobs import add_warnings, current_state, get_job, record_epoch, record_stage, transition
from core.mace_process import TrainingCancelled
from core.models import JobState
from core.spec import JobSpec, replay_of
from core.storage import LocalStorage, Storage
from core.training import JobFiles, TrainingResult, run_training

logger = logging.getLogger(__name__)


@dataclass
class JobContext:
    sessions: sessionmaker[Session]
    storage: Storage
    registry: FoundationRegistry
    work_root: Path
    device: str = "cpu"
    cache: PredictionCache | None = None


class RecordedProgress:
    """Progress of a running job, written to its row so GET /jobs/{id} shows it."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str) -> None:
        self.sessions = sessions
        self.job_id = job_id

    def stage(self, name: str) -> None:
        with session_scope(self.sessions) as session:
            record_stage(session, self.job_id, name)
        logger.info("job=%s stage=%s", self.job_id, name)

    def epoch(self, entry: dict) -> None:
        with session_scope(self.sessions) as session:
            record_epoch(session, self.job_id, entry)

    def should_stop(self) -> bool:
        with session_scope(self.sessions) as session:
            return current_state(session, self.job_id) is JobState.CANCELLED


def execute_job(context: JobContext, job_id: str) -> JobState:
    """Run a job that is queued, or running after its worker died; idempotent otherwise."""
    if not _claim(context.sessions, job_id):
        with session_scope(context.sessions) as session:
            return current_state(session, job_id)
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        spec = JobSpec.model_validate(job.spec)
    work_dir = context.work_root / job_id
    try:
        files = _fetch_inputs(context, spec, work_dir / "inputs")
        foundation = context.registry.resolve(spec.foundation_model)
        result = run_training(
            spec,
            files,
            foundation,
            work_dir,
            RecordedProgress(context.sessions, job_id),
            device=context.device,
            cache=context.cache,
        )
        return _finish(context, job_id, result)
    except TrainingCancelled:
        logger.info("job=%s cancelled while training", job_id)
        return JobState.CANCELLED
    except MlftError as error:
        return _fail(context, job_id, str(error))
    except Exception as error:
        logger.exception("job=%s failed unexpectedly", job_id)
        return _fail(context, job_id, f"internal error: {type(error).__name__}: {error}")


def _claim(sessions: sessionmaker[Session], job_id: str) -> bool:
    with session_scope(sessions) as session:
        job = get_job(session, job_id)
        attempts = job.attempts + 1
        if job.state is JobState.QUEUED:
            return transition(session, job_id, JobState.QUEUED, JobState.RUNNING, attempts=attempts)
        if job.state is JobState.RUNNING:
            # Redelivered after a worker died (late acknowledgement): resume from checkpoints.
            logger.warning("job=%s was running; resuming (attempt %d)", job_id, attempts)
            job.attempts = attempts
            return True
        return False


def _fetch_inputs(context: JobContext, spec: JobSpec, folder: Path) -> JobFiles:
    def fetch(dataset_id: str | None, role: str) -> Path | None:
        if dataset_id is None:
            return None
        with session_scope(context.sessions) as session:
            key = get_dataset(session, dataset_id).storage_key
        return context.storage.fetch(key, folder / f"{role}.extxyz")

    train = fetch(spec.train_dataset, "train")
    assert train is not None
    replay = replay_of(spec.strategy)
    forgetting = spec.evaluation.replay_dataset or (replay.dataset if replay else None)
    return JobFiles(
        train=train,
        valid=fetch(spec.valid_dataset, "valid"),
        test=fetch(spec.test_dataset, "test"),
        isolated_atoms=fetch(spec.isolated_atoms_dataset, "isolated_atoms"),
        replay=fetch(replay.dataset if replay else None, "replay"),
        forgetting=fetch(forgetting, "forgetting"),
        reference=fetch(spec.evaluation.reference_dataset, "reference"),
    )


def model_key(job_id: str, variant: str = "model") -> str:
    return f"jobs/{job_id}/{variant}.model"


def _finish(context: JobContext, job_id: str, result: TrainingResult) -> JobState:
    keys = {"model_key": model_key(job_id)}
    context.storage.put_file(keys["model_key"], result.model_path)
    if result.multihead_model_path is not None:
        keys["multihead_model_key"] = model_key(job_id, "multihead")
        context.storage.put_file(keys["multihead_model_key"], result.multihead_model_path)
    checks = dict(result.checks)
    if result.replay is not None:
        checks["replay"] = {k: v for k, v in result.replay.to_dict().items() if k != "path"}
    with session_scope(context.sessions) as session:
        add_warnings(session, job_id, result.warnings)
        won = transition(
            session,
            job_id,
            JobState.RUNNING,
            JobState.SUCCEEDED,
            stage=None,
            e0s={
                **result.e0_fit.to_dict(),
                "isolated_atom_energies": result.isolated_atom_energies,
            },
            metrics=result.evaluation,
            checks=checks,
            **keys,
        )
    if not won:
        for key in keys.values():
            context.storage.delete(key)
        with session_scope(context.sessions) as session:
            return current_state(session, job_id)
    shutil.rmtree(context.work_root / job_id, ignore_errors=True)
    logger.info("job=%s succeeded model=%s", job_id, keys["model_key"])
    return JobState.SUCCEEDED


def _fail(context: JobContext, job_id: str, reason: str) -> JobState:
    logger.warning("job=%s failed: %s", job_id, reason)
    with session_scope(context.sessions) as session:
        transition(session, job_id, JobState.RUNNING, JobState.FAILED, error=reason, stage=None)
        return current_state(session, job_id)


def context_from_settings(settings: Settings) -> JobContext:
    return JobContext(
        sessions=session_factory(settings.resolved_database_url),
        storage=LocalStorage(settings.data_dir / "artifacts"),
        registry=FoundationRegistry(settings.resolved_models_dir),
        work_root=settings.data_dir / "work",
        device=settings.device,
        cache=PredictionCache(settings.data_dir / "cache"),
    )
