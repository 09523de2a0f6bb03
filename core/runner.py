"""Execute one queued job end to end: the job row and artifact store around core.training."""

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.cache import PredictionCache
from core.catalog import get_dataset, referenced_dataset
from core.checkpoints import CheckpointSync, prepare_resume
from core.config import Settings
from core.datasets import read_configurations
from core.db import session_factory, session_scope
from core.errors import InvalidSpecError, MlftError, PreflightBlockedError
from core.foundations import FoundationRegistry, model_load_lock
from core.jobs import add_warnings, current_state, get_job, record_epoch, record_stage, transition
from core.leases import LeaseKeeper, claim_job
from core.mace_process import TrainingCancelled
from core.model_card import build_model_card, render_markdown
from core.models import Job, JobState, utcnow
from core.replay_sets import with_built_replay
from core.spec import JobSpec, replay_of
from core.storage import Storage, storage_from_settings
from core.training import JobFiles, TrainingResult, load_model, preflight_job, run_training

logger = logging.getLogger(__name__)


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


class RecordedProgress:
    """Progress of a running job, written to its row so GET /jobs/{id} shows it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: str,
        *,
        lease: LeaseKeeper | None = None,
        checkpoints: CheckpointSync | None = None,
        resumed: bool = False,
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.lease = lease
        self.checkpoints = checkpoints
        self.resumed = resumed

    def stage(self, name: str) -> None:
        with session_scope(self.sessions) as session:
            record_stage(session, self.job_id, name)
        logger.info("job=%s stage=%s", self.job_id, name)

    def preflight(self, report: dict[str, Any], cost: dict[str, Any] | None) -> None:
        """Findings and the cost estimate on the row before training starts."""
        with session_scope(self.sessions) as session:
            job = get_job(session, self.job_id)
            job.preflight = report
            job.cost = {"predicted": cost, "actual": None}

    def epoch(self, entry: dict) -> None:
        if entry.get("epoch") is None and self.resumed:
            return  # the restored model's initial validation; the first run recorded its own
        with session_scope(self.sessions) as session:
            record_epoch(session, self.job_id, entry)

    def should_stop(self) -> bool:
        if self.checkpoints is not None:
            try:
                self.checkpoints.push()
            except Exception:  # storage briefly away: keep training, push at the next poll
                logger.exception("job=%s checkpoint upload failed", self.job_id)
        if self.lease is not None and self.lease.lost.is_set():
            return True  # cancelled, or taken over by another worker after a lease expiry
        with session_scope(self.sessions) as session:
            return current_state(session, self.job_id) is JobState.CANCELLED


def execute_job(context: JobContext, job_id: str) -> JobState:
    """Run a job that is queued, or running after its worker died; idempotent otherwise."""
    with session_scope(context.sessions) as session:
        claim = claim_job(
            session,
            job_id,
            lease_seconds=context.lease_seconds,
            max_attempts=context.max_attempts,
        )
    if claim is None:
        with session_scope(context.sessions) as session:
            return current_state(session, job_id)
    work_dir = context.work_root / job_id
    checkpoints = CheckpointSync(context.storage, job_id, work_dir / "checkpoints")
    with LeaseKeeper(context.sessions, job_id, claim, context.lease_seconds) as lease:
        if claim.resumed:
            prepare_resume(context.sessions, context.storage, job_id, work_dir, claim.attempt)
        progress = RecordedProgress(
            context.sessions, job_id, lease=lease, checkpoints=checkpoints, resumed=claim.resumed
        )
        state = _run_claimed(context, job_id, work_dir, progress)
    if state is not JobState.RUNNING:
        checkpoints.discard()
    return state


def _run_claimed(
    context: JobContext, job_id: str, work_dir: Path, progress: RecordedProgress
) -> JobState:
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        spec = JobSpec.model_validate(job.spec)
    try:
        spec = with_built_replay(context, job_id, spec)
        files = _fetch_inputs(context, spec, work_dir / "inputs")
        foundation = context.registry.resolve(spec.foundation_model)
        result = run_training(
            spec,
            files,
            foundation,
            work_dir,
            progress,
            device=context.device,
            cache=context.cache,
        )
        return _finish(context, job_id, result)
    except TrainingCancelled:
        with session_scope(context.sessions) as session:
            state = current_state(session, job_id)
        logger.info("job=%s training stopped: the job is %s", job_id, state.value)
        return state
    except PreflightBlockedError as error:
        return _fail(context, job_id, str(error), preflight=error.report)
    except MlftError as error:
        return _fail(context, job_id, str(error))
    except Exception as error:
        logger.exception("job=%s failed unexpectedly", job_id)
        return _fail(context, job_id, f"internal error: {type(error).__name__}: {error}")


def preflight_check(context: JobContext, spec: JobSpec) -> dict[str, Any]:
    """The preflight stage of a job with `spec`, run now without creating the job: findings,
    suggestion and cost estimate (POST /preflight)."""
    with session_scope(context.sessions) as session:
        for role, dataset_id in _dataset_roles(spec).items():
            referenced_dataset(session, dataset_id, role)
    context.registry.ensure_not_building(spec.foundation_model)
    if not context.registry.exists(spec.foundation_model):
        raise InvalidSpecError(
            f"unknown foundation model {spec.foundation_model!r}; GET /foundation-models lists them"
        )
    with tempfile.TemporaryDirectory(prefix="mlft-preflight-") as folder:
        files = _fetch_inputs(context, spec, Path(folder))
        foundation = context.registry.resolve(spec.foundation_model)
        with model_load_lock():
            model = load_model(foundation.path, context.device)
        outcome = preflight_job(
            spec,
            read_configurations(files.train),
            files,
            foundation,
            model,
            context.cache,
            context.device,
        )
    return {
        **outcome.report.to_dict(),
        "cost_estimate": outcome.cost.to_dict() if outcome.cost else None,
    }


def _dataset_roles(spec: JobSpec) -> dict[str, str]:
    replay = replay_of(spec.strategy)
    roles = {
        "train_dataset": spec.train_dataset,
        "valid_dataset": spec.valid_dataset,
        "test_dataset": spec.test_dataset,
        "isolated_atoms_dataset": spec.isolated_atoms_dataset,
        # `replay: auto` has no dataset until the job builds it.
        "replay dataset": replay.dataset if replay and not replay.auto else None,
    }
    return {role: dataset_id for role, dataset_id in roles.items() if dataset_id is not None}


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
    if replay is not None and replay.auto:
        replay = None  # preflight of a job whose replay set is not built yet
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
    exports = _store_exports(context, job_id, result)
    stored = [*keys.values(), *(entry["key"] for entry in exports.values() if entry["key"])]
    e0s = {**result.e0_fit.to_dict(), "isolated_atom_energies": result.isolated_atom_energies}
    with session_scope(context.sessions) as session:
        card = model_card_of(session, get_job(session, job_id), result, e0s, checks, exports)
    stored += _store_card(context, job_id, card)
    for name, path in result.artifacts.items():
        stored.append(artifact_key(job_id, name))
        context.storage.put_file(stored[-1], path)
    with session_scope(context.sessions) as session:
        add_warnings(session, job_id, result.warnings)
        won = transition(
            session,
            job_id,
            JobState.RUNNING,
            JobState.SUCCEEDED,
            stage=None,
            e0s=e0s,
            metrics=result.evaluation,
            checks=checks,
            preflight=result.preflight,
            split=result.split,
            cost=result.cost,
            exports=exports,
            model_card=card,
            **keys,
        )
    if not won:
        with session_scope(context.sessions) as session:
            state = current_state(session, job_id)
        # Another run of the job (after a lease takeover) won: its artifacts have these keys.
        if state is not JobState.SUCCEEDED:
            for key in stored:
                context.storage.delete(key)
        return state
    shutil.rmtree(context.work_root / job_id, ignore_errors=True)
    logger.info("job=%s succeeded model=%s", job_id, keys["model_key"])
    return JobState.SUCCEEDED


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


EXPORT_FILES = {"torchscript": "torchscript.pt", "lammps": "lammps.pt"}
CARD_FILES = {"json": "model-card.json", "md": "model-card.md"}


def _store_exports(
    context: JobContext, job_id: str, result: TrainingResult
) -> dict[str, dict[str, Any]]:
    exports = {}
    for export in result.exports:
        key = None
        if export.ok and export.path is not None:
            key = artifact_key(job_id, EXPORT_FILES[export.variant])
            context.storage.put_file(key, export.path)
        exports[export.variant] = {**export.to_dict(), "key": key}
    return exports


def _store_card(context: JobContext, job_id: str, card: dict[str, Any]) -> list[str]:
    folder = context.work_root / job_id
    texts = {"json": json.dumps(card, indent=2), "md": render_markdown(card)}
    keys = []
    for kind, text in texts.items():
        path = folder / CARD_FILES[kind]
        path.write_text(text, encoding="utf-8")
        keys.append(artifact_key(job_id, CARD_FILES[kind]))
        context.storage.put_file(keys[-1], path)
    return keys


def model_card_of(
    session: Session,
    job: Job,
    result: TrainingResult,
    e0s: dict[str, Any],
    checks: dict[str, Any],
    exports: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    spec = job.spec
    roles = {
        "train": spec["train_dataset"],
        "valid": spec.get("valid_dataset"),
        "test": spec.get("test_dataset"),
        "isolated_atoms": spec.get("isolated_atoms_dataset"),
        "replay": (spec["strategy"].get("replay") or {}).get("dataset"),
    }
    datasets = {}
    for role, dataset_id in roles.items():
        if dataset_id is None:
            continue
        dataset = get_dataset(session, dataset_id)
        datasets[role] = {
            "id": dataset.id,
            "name": dataset.name,
            "sha256": dataset.sha256,
            "n_configs": dataset.summary.get("n_configs"),
            "size_bytes": dataset.summary.get("size_bytes"),
        }
    return build_model_card(
        job_id=job.id,
        spec=spec,
        foundation=result.foundation,
        datasets=datasets,
        effective_hyperparameters=job.effective_hyperparameters,
        e0s=e0s,
        metrics=result.evaluation,
        checks=checks,
        split=result.split,
        preflight=result.preflight,
        cost=result.cost,
        exports=exports,
        created_at=utcnow().isoformat(timespec="seconds"),
    )


def _fail(context: JobContext, job_id: str, reason: str, **values: Any) -> JobState:
    logger.warning("job=%s failed: %s", job_id, reason)
    with session_scope(context.sessions) as session:
        transition(
            session, job_id, JobState.RUNNING, JobState.FAILED, error=reason, stage=None, **values
        )
        return current_state(session, job_id)


def context_from_settings(settings: Settings) -> JobContext:
    return JobContext(
        sessions=session_factory(settings.resolved_database_url),
        storage=storage_from_settings(settings),
        registry=FoundationRegistry(settings.resolved_models_dir),
        work_root=settings.data_dir / "work",
        device=settings.device,
        cache=PredictionCache(settings.data_dir / "cache"),
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.max_attempts,
    )
