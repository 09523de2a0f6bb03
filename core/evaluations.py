"""Evaluations outside a training job: any model (a job's or a foundation) × any dataset."""

import logging
from pathlib import Path

from ase.formula import Formula
from sqlalchemy.orm import Session

from core.catalog import get_dataset, referenced_dataset
from core.datasets import read_configurations
from core.db import session_scope
from core.errors import InvalidSpecError, MlftError, NotFoundError
from core.evaluation.rss import FLAGGED_FILE_NAME as RSS_FLAGGED_FILE
from core.evaluation.rss import rss_holes_stage
from core.evaluation.suite import EvaluationData, evaluate_model
from core.foundation_heads import working_foundation
from core.foundations import (
    FoundationModel,
    ModelSource,
    choose_head,
    load_foundation,
    load_model_source,
)
from core.jobs import get_job, transition
from core.leases import LeaseKeeper, claim, leave_no_folder
from core.models import Evaluation, Job, JobState
from core.runner import JobContext
from core.spec import EvaluationSpec, JobSpec, RssHolesSettings

logger = logging.getLogger(__name__)


def submit_evaluation(session: Session, spec: EvaluationSpec, context: JobContext) -> Evaluation:
    """Check the references and create the row (queued); the caller enqueues it afterwards."""
    if spec.dataset is not None:
        referenced_dataset(session, spec.dataset, "dataset")
    for role in ("replay_dataset", "reference_dataset"):
        dataset_id = getattr(spec.settings, role)
        if dataset_id is not None:
            referenced_dataset(session, dataset_id, role)
    if spec.model.job is not None:
        _succeeded_job(session, spec.model.job)
    for name in (spec.model.foundation_model, spec.foundation_model):
        if name is not None:
            context.registry.ensure_not_building(name)
        if name is not None and not context.registry.exists(name):
            raise InvalidSpecError(f"unknown foundation model {name!r}")
        info = context.registry.info(name) if name is not None else None
        if info is not None and spec.foundation_head is not None:
            choose_head(name, info.heads, spec.foundation_head)
    rss = rss_settings(spec)
    if rss is not None:
        _check_rss_elements(session, context, spec, rss)
    evaluation = Evaluation(spec=spec.model_dump(mode="json"))
    session.add(evaluation)
    session.commit()
    logger.info("evaluation=%s queued dataset=%s", evaluation.id, spec.dataset)
    return evaluation


def get_evaluation(session: Session, evaluation_id: str) -> Evaluation:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise NotFoundError(f"evaluation {evaluation_id} does not exist")
    return evaluation


class WorkStopped(Exception):
    """The row was cancelled, or its lease taken over, while a worker worked on it."""


def execute_evaluation(context: JobContext, evaluation_id: str) -> JobState:
    """Run a queued evaluation, or rerun one whose worker died; idempotent otherwise."""
    state = _execute(context, evaluation_id)
    return leave_no_folder(state, work_folder(context, evaluation_id))


def work_folder(context: JobContext, evaluation_id: str) -> Path:
    return context.work_root / f"evaluation-{evaluation_id}"


def _execute(context: JobContext, evaluation_id: str) -> JobState:
    with session_scope(context.sessions) as session:
        claimed = claim(
            session,
            Evaluation,
            evaluation_id,
            lease_seconds=context.lease_seconds,
            max_attempts=context.max_attempts,
        )
        evaluation = get_evaluation(session, evaluation_id)
        if claimed is None:
            return evaluation.state
        spec = EvaluationSpec.model_validate(evaluation.spec)
    if claimed.resumed:
        logger.warning("evaluation=%s rerun: attempt %d", evaluation_id, claimed.attempt)
    keeper = LeaseKeeper(
        context.sessions, evaluation_id, claimed, context.lease_seconds, table=Evaluation
    )
    try:
        with keeper:
            report = _evaluate(context, evaluation_id, spec, keeper)
    except WorkStopped:
        return _state_now(context, evaluation_id)
    except MlftError as error:
        return _end(context, evaluation_id, JobState.FAILED, error=str(error))
    except Exception as error:
        logger.exception("evaluation=%s failed unexpectedly", evaluation_id)
        message = f"internal error: {type(error).__name__}: {error}"
        return _end(context, evaluation_id, JobState.FAILED, error=message)
    return _end(context, evaluation_id, JobState.SUCCEEDED, report=report)


def _state_now(context: JobContext, evaluation_id: str) -> JobState:
    with session_scope(context.sessions) as session:
        state = get_evaluation(session, evaluation_id).state
    logger.info("evaluation=%s stopped: it is %s", evaluation_id, state.value)
    return state


def _evaluate(
    context: JobContext, evaluation_id: str, spec: EvaluationSpec, lease: LeaseKeeper
) -> dict:
    rss = rss_settings(spec)
    with session_scope(context.sessions) as session:
        source, foundation_name, head = _model_source(session, context, spec)
        roles = {"test": spec.dataset}
        if spec.kind == "standard":
            roles["replay"] = spec.settings.replay_dataset
            roles["reference"] = spec.settings.reference_dataset
        if rss is not None and not rss.compositions and spec.model.job is not None:
            roles["train"] = get_job(session, spec.model.job).spec["train_dataset"]
        files = {
            role: context.storage.local_path(get_dataset(session, dataset_id).storage_key)
            for role, dataset_id in roles.items()
            if dataset_id is not None
        }
    configs = {role: read_configurations(path) for role, path in files.items()}

    def stage(name: str) -> None:
        # Between stages is where a cancelled (or taken over) evaluation stops.
        if lease.lost.is_set():
            raise WorkStopped(evaluation_id)
        with session_scope(context.sessions) as session:
            get_evaluation(session, evaluation_id).stage = name

    folder = work_folder(context, evaluation_id)
    if spec.model.foundation_model is not None:
        source = _single_head(context, spec.model.foundation_model, head, folder)
    report: dict = {}
    if spec.kind == "standard":
        foundation = None
        if foundation_name is not None and configs.get("replay") is not None:
            foundation = load_foundation(
                _single_head(context, foundation_name, head, folder), context.device
            )
        data = EvaluationData(
            test=configs["test"], replay=configs.get("replay"), reference=configs.get("reference")
        )
        report = evaluate_model(
            load_model_source(source, context.device),
            data,
            spec.settings,
            foundation=foundation,
            on_stage=stage,
            device=context.device,
        )
    if rss is not None:
        flagged = folder / RSS_FLAGGED_FILE
        report["rss_holes"] = rss_holes_stage(
            rss,
            configs.get("test") or configs.get("train") or [],
            source,
            flagged,
            model_name=spec.model.job or spec.model.foundation_model or "model",
            foundation=(
                _single_head(context, foundation_name, head, folder) if foundation_name else None
            ),
            cache_folder=context.cache.folder / "rss" if context.cache is not None else None,
            device=context.device,
            on_stage=stage,
        )
        context.storage.put_file(evaluation_artifact_key(evaluation_id, RSS_FLAGGED_FILE), flagged)
    return report


def _single_head(
    context: JobContext, name: str, head: str | None, folder: Path
) -> FoundationModel:
    """The foundation's file with the evaluated head alone (core.foundation_heads)."""
    foundation = context.registry.resolve(name)
    working, _, _ = working_foundation(
        foundation, load_foundation(foundation, context.device), head, folder / name
    )
    return working


def evaluation_artifact_key(evaluation_id: str, name: str) -> str:
    return f"evaluations/{evaluation_id}/{name}"


def rss_settings(spec: EvaluationSpec) -> RssHolesSettings | None:
    """The random-structure-search settings the evaluation runs with, None when it runs none."""
    if spec.settings.rss_holes is not None:
        return spec.settings.rss_holes
    return RssHolesSettings() if spec.kind == "rss_holes" else None


def _check_rss_elements(
    session: Session, context: JobContext, spec: EvaluationSpec, rss: RssHolesSettings
) -> None:
    """Compositions must come from somewhere, and the model must know their elements."""
    job = _succeeded_job(session, spec.model.job) if spec.model.job is not None else None
    if rss.compositions:
        wanted = {symbol for text in rss.compositions for symbol in Formula(text).count()}
    elif spec.dataset is not None:
        wanted = set(get_dataset(session, spec.dataset).summary["elements"])
    elif job is not None:
        wanted = set(get_dataset(session, job.spec["train_dataset"]).summary["elements"])
    else:
        raise InvalidSpecError(
            "rss_holes needs compositions: name them in settings.rss_holes.compositions, or give "
            "a dataset (or a job's model) whose stoichiometries they are drawn from"
        )
    if job is None:
        known = context.registry.local_elements(spec.model.foundation_model or "")
    else:
        # mace keeps only the training data's elements in a fine-tuned model (freeze jobs aside).
        known = get_dataset(session, job.spec["train_dataset"]).summary["elements"]
    missing = sorted(wanted - set(known)) if known is not None else []
    if missing:
        raise InvalidSpecError(
            f"the model does not know element(s) {', '.join(missing)} of the rss_holes "
            "compositions; it can only relax structures of the elements it was trained on"
        )


def _model_source(
    session: Session, context: JobContext, spec: EvaluationSpec
) -> tuple[ModelSource, str | None, str | None]:
    """The model (a registered foundation, or a job's model the service stored under its own
    key), the foundation its forgetting is measured against and that foundation's head (None:
    its default)."""
    if spec.model.foundation_model is not None:
        foundation = context.registry.resolve(spec.model.foundation_model)
        compared = spec.foundation_model or spec.model.foundation_model
        return foundation, compared, spec.foundation_head
    job = _succeeded_job(session, spec.model.job)
    job_spec = JobSpec.model_validate(job.spec)
    # A job's model is compared with the head it was fine-tuned from unless told otherwise.
    head = spec.foundation_head or (None if spec.foundation_model else job_spec.foundation_head)
    source = context.storage.local_path(job.model_key)
    return source, spec.foundation_model or job_spec.foundation_model, head


def _succeeded_job(session: Session, job_id: str) -> Job:
    try:
        job = get_job(session, job_id)
    except NotFoundError as error:
        raise InvalidSpecError(f"job {job_id} does not exist") from error
    if job.state is not JobState.SUCCEEDED or job.model_key is None:
        raise InvalidSpecError(
            f"job {job_id} is {job.state.value}; only a job that succeeded has a model"
        )
    return job


def _end(context: JobContext, evaluation_id: str, state: JobState, **values) -> JobState:
    with session_scope(context.sessions) as session:
        transition(
            session,
            evaluation_id,
            JobState.RUNNING,
            state,
            table=Evaluation,
            stage=None,
            lease_owner=None,
            **values,
        )
        final = get_evaluation(session, evaluation_id).state
    logger.info("evaluation=%s ended %s", evaluation_id, final.value)
    return final
