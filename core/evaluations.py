"""Evaluations outside a training job: any model (a job's or a foundation) × any dataset."""

import logging
import shutil
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
from core.jobs import get_job, transition
from core.models import Evaluation, Job, JobState
from core.runner import JobContext
from core.spec import EvaluationSpec, JobSpec, RssHolesSettings
from core.training import load_model

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


def execute_evaluation(context: JobContext, evaluation_id: str) -> JobState:
    with session_scope(context.sessions) as session:
        evaluation = get_evaluation(session, evaluation_id)
        spec = EvaluationSpec.model_validate(evaluation.spec)
        if evaluation.state is JobState.QUEUED and not transition(
            session, evaluation_id, JobState.QUEUED, JobState.RUNNING, table=Evaluation
        ):
            return get_evaluation(session, evaluation_id).state
        if evaluation.state not in (JobState.QUEUED, JobState.RUNNING):
            return evaluation.state
    try:
        report = _evaluate(context, evaluation_id, spec)
    except MlftError as error:
        return _end(context, evaluation_id, JobState.FAILED, error=str(error))
    except Exception as error:
        logger.exception("evaluation=%s failed unexpectedly", evaluation_id)
        message = f"internal error: {type(error).__name__}: {error}"
        return _end(context, evaluation_id, JobState.FAILED, error=message)
    return _end(context, evaluation_id, JobState.SUCCEEDED, report=report)


def _evaluate(context: JobContext, evaluation_id: str, spec: EvaluationSpec) -> dict:
    rss = rss_settings(spec)
    with session_scope(context.sessions) as session:
        model_path, foundation_name = _model_path(session, context, spec)
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
        with session_scope(context.sessions) as session:
            get_evaluation(session, evaluation_id).stage = name

    report: dict = {}
    if spec.kind == "standard":
        foundation = None
        if foundation_name is not None and configs.get("replay") is not None:
            foundation = load_model(context.registry.resolve(foundation_name).path, context.device)
        data = EvaluationData(
            test=configs["test"], replay=configs.get("replay"), reference=configs.get("reference")
        )
        report = evaluate_model(
            load_model(model_path, context.device),
            data,
            spec.settings,
            foundation=foundation,
            on_stage=stage,
            device=context.device,
        )
    if rss is not None:
        flagged = context.work_root / f"evaluation-{evaluation_id}" / RSS_FLAGGED_FILE
        report["rss_holes"] = rss_holes_stage(
            rss,
            configs.get("test") or configs.get("train") or [],
            model_path,
            flagged,
            model_name=spec.model.job or spec.model.foundation_model or "model",
            foundation=context.registry.resolve(foundation_name) if foundation_name else None,
            cache_folder=context.cache.folder / "rss" if context.cache is not None else None,
            device=context.device,
            on_stage=stage,
        )
        context.storage.put_file(evaluation_artifact_key(evaluation_id, RSS_FLAGGED_FILE), flagged)
        shutil.rmtree(flagged.parent, ignore_errors=True)
    return report


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


def _model_path(
    session: Session, context: JobContext, spec: EvaluationSpec
) -> tuple[Path, str | None]:
    """The model file and the foundation its forgetting is measured against."""
    if spec.model.foundation_model is not None:
        path = context.registry.resolve(spec.model.foundation_model).path
        return path, spec.foundation_model or spec.model.foundation_model
    job = _succeeded_job(session, spec.model.job)
    job_foundation = JobSpec.model_validate(job.spec).foundation_model
    return context.storage.local_path(job.model_key), spec.foundation_model or job_foundation


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
            session, evaluation_id, JobState.RUNNING, state, table=Evaluation, stage=None, **values
        )
        final = get_evaluation(session, evaluation_id).state
    logger.info("evaluation=%s ended %s", evaluation_id, final.value)
    return final
