"""Execute one queued job end to end: the job row and artifact store around
core.workflows.training."""

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.artifacts.storage_keys import (
    CARD_FILES,
    EXPORT_FILES,
    MACE_LOG_NAME,
    job_artifact_key,
    model_key,
)
from core.data.catalog import get_dataset, referenced_dataset
from core.data.datasets import read_configurations
from core.errors import InvalidSpecError, MlftError, PreflightBlockedError
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import load_foundation, model_load_lock
from core.reporting.job_report import job_verdicts
from core.reporting.model_card import build_model_card, render_markdown
from core.science.mace_process import RungPlan
from core.science.spec import JobSpec, needs_foundation, replay_of
from core.service.db import DATABASE_UNREACHABLE, session_scope
from core.service.job_logs import LogShipper
from core.service.jobs import add_warnings, current_state, get_job, record_epoch, record_stage
from core.service.leases import LeaseKeeper
from core.service.models import Job, JobState, ReplaySet, utcnow
from core.workflows.checkpoints import CheckpointSync, prepare_resume
from core.workflows.context import JobContext
from core.workflows.early_stopping import judge_rung, rung_plan
from core.workflows.job_preflight import preflight_job
from core.workflows.mlflow_runs import log_job_run
from core.workflows.promotion import with_lineage
from core.workflows.replay_sets import with_built_replay
from core.workflows.training import run_training
from core.workflows.training_records import JobFiles, TrainingResult
from core.workflows.work import Work, end, execute, state_of, work_folder

logger = logging.getLogger(__name__)


class RecordedProgress:
    """Progress of a running job, written to its row so GET /jobs/{id} shows it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: str,
        *,
        lease: LeaseKeeper | None = None,
        checkpoints: CheckpointSync | None = None,
        log: LogShipper | None = None,
        resumed: bool = False,
        context: JobContext | None = None,
        progress_interval_s: float = 2.0,
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.lease = lease
        self.checkpoints = checkpoints
        self.log = log
        self.resumed = resumed
        self.context = context
        self.progress_interval_s = progress_interval_s
        self._last_steps_write = -math.inf
        # Epochs mace reported while the database was away, written once it is back.
        self._unrecorded: list[dict] = []
        # What `trained` stored, so the job's end does not store it again.
        self.delivered: Delivery | None = None
        # A job of a sweep that stops losers early: where mace waits for each rung's verdict.
        self.rungs: RungPlan | None = None

    def stage(self, name: str) -> None:
        self._record_epochs()
        with session_scope(self.sessions) as session:
            record_stage(session, self.job_id, name)
        logger.info("job=%s stage=%s", self.job_id, name)

    def steps(self, stage: str, done: int, total: int) -> None:
        """Progress inside a long stage (MD steps); written at most every progress_interval_s,
        since an MD step takes milliseconds and a row update does too."""
        now = time.monotonic()
        if done < total and now - self._last_steps_write < self.progress_interval_s:
            return
        self._last_steps_write = now
        with session_scope(self.sessions) as session:
            record_stage(
                session,
                self.job_id,
                f"{stage} {done}/{total} steps",
                progress={"stage": stage, "done": done, "total": total, "unit": "steps"},
            )

    def e0s_chosen(self, e0s: dict[str, Any]) -> None:
        with session_scope(self.sessions) as session:
            get_job(session, self.job_id).e0s = e0s

    def trained(self, result: TrainingResult) -> None:
        """The model passed its checks: deliver it (and its exports and card) while the
        evaluation runs; the job stays running until the evaluation ends."""
        if self.context is None:
            return
        self.delivered = deliver_model(self.context, self.job_id, result)

    def preflight(self, report: dict[str, Any], cost: dict[str, Any] | None) -> None:
        """Findings and the cost estimate on the row before training starts."""
        with session_scope(self.sessions) as session:
            job = get_job(session, self.job_id)
            job.preflight = report
            job.cost = {"predicted": cost, "actual": None}

    def epoch(self, entry: dict) -> None:
        if entry.get("epoch") is None and self.resumed:
            return  # the restored model's initial validation; the first run recorded its own
        self._unrecorded.append(entry)
        self._record_epochs()
        if self.rungs is not None:
            try:
                judge_rung(self.sessions, self.job_id, self.rungs, entry)
            except Exception:  # mace waits for a verdict: a failed judgement lets the job go on
                logger.exception("job=%s rung not judged; training goes on", self.job_id)
                if entry.get("epoch") is not None and entry.get("head") != "replay":
                    self.rungs.give_verdict(entry["epoch"] + 1, stop=False)

    def should_stop(self) -> bool:
        if self.checkpoints is not None:
            try:
                self.checkpoints.push()
            except Exception:  # storage briefly away: keep training, push at the next poll
                logger.exception("job=%s checkpoint upload failed", self.job_id)
        if self.log is not None:
            self.log.ship()
        if self.lease is not None and self.lease.lost.is_set():
            return True  # cancelled, or taken over by another worker after a lease expiry
        self._record_epochs()
        try:
            with session_scope(self.sessions) as session:
                return current_state(session, self.job_id) is JobState.CANCELLED
        except DATABASE_UNREACHABLE:
            # mace trains on while the database is away; were the job taken over meanwhile,
            # the lease keeper finds out once it is back.
            return False

    def _record_epochs(self) -> None:
        """Write the epochs not on the row yet, oldest first; a database that is away keeps
        the rest for the next try, and training goes on."""
        try:
            while self._unrecorded:
                with session_scope(self.sessions) as session:
                    record_epoch(session, self.job_id, self._unrecorded[0])
                self._unrecorded.pop(0)
        except DATABASE_UNREACHABLE as error:
            logger.warning(
                "job=%s database unreachable, %d epoch(s) to record later: %s",
                self.job_id,
                len(self._unrecorded),
                type(error).__name__,
            )


def execute_job(context: JobContext, job_id: str) -> JobState:
    """Run a job that is queued, or running after its worker died; idempotent otherwise."""
    work_dir = work_folder(context, Job, job_id)
    checkpoints = CheckpointSync(context.storage, job_id, work_dir / "checkpoints")
    log = LogShipper(context.sessions, job_id, work_dir / MACE_LOG_NAME)

    def body(work: Work) -> None:
        _run_job(work, work_dir, checkpoints, log)

    def ended() -> None:
        # What matters is in storage and on the row; the folder goes with the shared lifecycle.
        _store_log(context, log)
        log_job_run(context, job_id)
        checkpoints.discard()

    return execute(context, Job, job_id, body, _failure_details, ended=ended)


def _store_log(context: JobContext, log: LogShipper) -> None:
    try:
        log.store(context.storage)
    except Exception:  # the job's outcome is recorded already; its log is a convenience
        logger.exception("job=%s full log not stored", log.job_id)


def _run_job(work: Work, work_dir: Path, checkpoints: CheckpointSync, log: LogShipper) -> None:
    context, job_id, claimed = work.context, work.row_id, work.claim
    if claimed.resumed:
        prepare_resume(context.sessions, context.storage, job_id, work_dir, claimed.attempt)
    progress = RecordedProgress(
        context.sessions,
        job_id,
        lease=work.lease,
        checkpoints=checkpoints,
        log=log,
        resumed=claimed.resumed,
        context=context,
        progress_interval_s=context.progress_interval_s,
    )
    spec = with_built_replay(context, job_id, _stored_spec(context, job_id))
    progress.rungs = rung_plan(context.sessions, job_id, spec, work_dir)
    with session_scope(context.sessions) as session:
        keys = _input_keys(session, spec)
    files = _fetch_inputs(context, keys, work_dir / "inputs")
    foundation = context.registry.resolve(spec.foundation_model) if spec.foundation_model else None
    result = run_training(
        spec, files, foundation, work_dir, progress, device=context.device, cache=context.cache
    )
    _finish(work, result, progress.delivered)


def _stored_spec(context: JobContext, job_id: str) -> JobSpec:
    with session_scope(context.sessions) as session:
        stored = get_job(session, job_id).spec
    try:
        return JobSpec.model_validate(stored)
    except ValidationError as error:
        # Accepted before a rule existed (a foundation named by a path, a NaN learning rate).
        raise InvalidSpecError(f"the job's spec is not valid any more: {error}") from error


def _failure_details(error: MlftError) -> dict[str, Any]:
    """What a failed job keeps on its row besides the reason: the blocking preflight report."""
    return {"preflight": error.report} if isinstance(error, PreflightBlockedError) else {}


def preflight_check(session: Session, context: JobContext, spec: JobSpec) -> dict[str, Any]:
    """The preflight stage of a job with `spec`, run now without creating the job: findings,
    suggestion and cost estimate (POST /preflight).

    `session` is the caller's (scoped to their project): another project's dataset id is as
    unknown here as an id that never existed.
    """
    for role, dataset_id in _dataset_roles(spec).items():
        referenced_dataset(session, dataset_id, role)
    context.registry.require_known(spec.foundation_model)
    with tempfile.TemporaryDirectory(prefix="mlft-preflight-") as folder:
        files = _fetch_inputs(context, _input_keys(session, spec), Path(folder))
        foundation = None
        model = None
        if spec.foundation_model is not None and needs_foundation(spec.strategy):
            foundation = context.registry.resolve(spec.foundation_model)
            loaded = load_foundation(foundation, context.device)
            # Taking out one head builds a model, which e3nn's code generation cannot do in two
            # threads at once either.
            with model_load_lock():
                foundation, model, _ = working_foundation(
                    foundation, loaded, spec.foundation_head, Path(folder)
                )
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
        "evaluation.replay_dataset": spec.evaluation.replay_dataset,
        "evaluation.reference_dataset": spec.evaluation.reference_dataset,
    }
    return {role: dataset_id for role, dataset_id in roles.items() if dataset_id is not None}


def _input_keys(session: Session, spec: JobSpec) -> dict[str, str]:
    """Storage keys of the job's input datasets by role, looked up through `session` (the
    caller's project scope for a preflight)."""
    replay = replay_of(spec.strategy)
    if replay is not None and replay.auto:
        replay = None  # preflight of a job whose replay set is not built yet
    forgetting = spec.evaluation.replay_dataset or (replay.dataset if replay else None)
    roles = {
        "train": spec.train_dataset,
        "valid": spec.valid_dataset,
        "test": spec.test_dataset,
        "isolated_atoms": spec.isolated_atoms_dataset,
        "replay": replay.dataset if replay else None,
        "forgetting": forgetting,
        "reference": spec.evaluation.reference_dataset,
    }
    return {
        role: get_dataset(session, dataset_id).storage_key
        for role, dataset_id in roles.items()
        if dataset_id is not None
    }


def _fetch_inputs(context: JobContext, keys: dict[str, str], folder: Path) -> JobFiles:
    files = {
        role: context.storage.fetch(key, folder / f"{role}.extxyz") for role, key in keys.items()
    }
    return JobFiles(
        train=files["train"],
        valid=files.get("valid"),
        test=files.get("test"),
        isolated_atoms=files.get("isolated_atoms"),
        replay=files.get("replay"),
        forgetting=files.get("forgetting"),
        reference=files.get("reference"),
    )


@dataclass(frozen=True)
class Delivery:
    """What a job stored of its model once the model passed its checks."""

    keys: dict[str, str]  # model_key and, for replay strategies, multihead_model_key
    exports: dict[str, dict[str, Any]]


def deliver_model(context: JobContext, job_id: str, result: TrainingResult) -> Delivery:
    """Store the delivered model, its exports and its card (without evaluation metrics yet), and
    point the running job's row at them: GET /jobs/{id}/model answers from now on."""
    keys = {"model_key": model_key(job_id)}
    context.storage.put_file(keys["model_key"], result.model_path)
    if result.multihead_model_path is not None:
        keys["multihead_model_key"] = model_key(job_id, "multihead")
        context.storage.put_file(keys["multihead_model_key"], result.multihead_model_path)
    exports = _store_exports(context, job_id, result)
    e0s = _e0s_of(result)
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        checks = _checks_of(result, _replay_set_of(session, job))
        card = model_card_of(session, job, result, e0s, checks, exports)
    _store_card(context, job_id, card)
    with session_scope(context.sessions) as session:
        # Only while this run still owns the job: a cancelled job keeps what it had.
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING)
            .values(
                e0s=e0s,
                checks=checks,
                exports=exports,
                model_card=card,
                split=result.split,
                cost=result.cost,
                updated_at=utcnow(),
                **keys,
            )
        )
    logger.info("job=%s model delivered model=%s; evaluating", job_id, keys["model_key"])
    return Delivery(keys, exports)


def _checks_of(result: TrainingResult, replay_set: ReplaySet | None = None) -> dict[str, Any]:
    checks = dict(result.checks)
    if result.replay is not None:
        checks["replay"] = {k: v for k, v in result.replay.to_dict().items() if k != "path"}
        checks["replay"]["labels"] = "foundation" if result.replay.pseudolabelled else "dataset"
        if _labelled_by_the_foundation(replay_set, result.foundation):
            # A replay set the foundation labelled (issue 12): replaying it is pseudolabelled
            # replay whatever the strategy's name.
            assert replay_set is not None
            labels = f"foundation (replay set {replay_set.id})"
            checks["replay"] |= {"pseudolabelled": True, "labels": labels}
    return checks


def _labelled_by_the_foundation(
    replay_set: ReplaySet | None, foundation: dict[str, str] | None
) -> bool:
    if replay_set is None or foundation is None:
        return False
    provenance = (replay_set.report or {}).get("provenance") or {}
    return provenance.get("foundation_sha256") == foundation.get("sha256")


def _replay_set_of(session: Session, job: Job) -> ReplaySet | None:
    """The replay set whose dataset the job replays, if its replay data came from one."""
    if job.replay_dataset_id is None:
        return None
    return session.scalar(
        select(ReplaySet).where(ReplaySet.dataset_id == job.replay_dataset_id).limit(1)
    )


def _e0s_of(result: TrainingResult) -> dict[str, Any]:
    return {**result.e0_fit.to_dict(), "isolated_atom_energies": result.isolated_atom_energies}


def _finish(work: Work, result: TrainingResult, delivered: Delivery | None) -> None:
    context, job_id = work.context, work.row_id
    if delivered is None:
        delivered = deliver_model(context, job_id, result)
    keys, exports = delivered.keys, delivered.exports
    e0s = _e0s_of(result)
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        checks = _checks_of(result, _replay_set_of(session, job))
        card = model_card_of(session, job, result, e0s, checks, exports)
    _store_card(context, job_id, card)  # the card again, now with the evaluation's metrics
    evaluated = []
    for name, path in result.artifacts.items():
        evaluated.append(job_artifact_key(job_id, name))
        context.storage.put_file(evaluated[-1], path)
    with session_scope(context.sessions) as session:
        add_warnings(session, job_id, result.warnings)
        verdicts = job_verdicts(result.evaluation, get_job(session, job_id).warnings)
    ending = JobState.STOPPED_EARLY if result.stopped_early else JobState.SUCCEEDED
    won = end(
        context,
        Job,
        job_id,
        ending,
        e0s=e0s,
        metrics=result.evaluation,
        verdicts=verdicts,
        checks=checks,
        preflight=result.preflight,
        split=result.split,
        cost=result.cost,
        exports=exports,
        model_card=card,
        **keys,
    )
    if not won:
        # Another run of the job (after a lease takeover) won: its artifacts have these keys.
        # Otherwise (cancelled during the evaluation) the delivered model stays with the job.
        if state_of(context, Job, job_id) is not ending:
            for key in evaluated:
                context.storage.delete(key)
        return
    logger.info("job=%s %s model=%s", job_id, ending.value, keys["model_key"])


def _store_exports(
    context: JobContext, job_id: str, result: TrainingResult
) -> dict[str, dict[str, Any]]:
    exports = {}
    for export in result.exports:
        key = None
        if export.ok and export.path is not None:
            key = job_artifact_key(job_id, EXPORT_FILES[export.variant])
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
        keys.append(job_artifact_key(job_id, CARD_FILES[kind]))
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
        foundation=with_lineage(session, result.foundation),
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
