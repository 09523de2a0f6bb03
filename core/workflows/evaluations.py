"""Evaluations outside a training job: any model (a job's or a foundation) × any dataset."""

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.formula import Formula
from sqlalchemy.orm import Session

from core.artifacts.storage_keys import RSS_FLAGGED_FILE, evaluation_artifact_key
from core.data.catalog import get_dataset, referenced_dataset
from core.data.datasets import read_configurations
from core.errors import InvalidSpecError, NotFoundError
from core.evaluation.md_plan import md_budget_s
from core.evaluation.rss import rss_holes_stage
from core.evaluation.suite import EvaluationData, evaluate_model
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import (
    FoundationModel,
    ModelSource,
    choose_head,
    load_foundation,
    load_model_source,
)
from core.science.spec import EvaluationSpec, JobSpec, RssHolesSettings
from core.service.db import session_scope
from core.service.jobs import get_job
from core.service.listing import NO_FILTERS, ListFilters, Page, list_page
from core.service.models import Evaluation, Job, JobState
from core.service.stages import Stage, run_stages
from core.workflows.context import JobContext
from core.workflows.work import Work, execute
from core.workflows.work import work_folder as work_folder_of

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
        context.registry.require_known(name)
        if name is None:
            continue
        info = context.registry.info(name)
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


def list_evaluations(
    session: Session, filters: ListFilters = NO_FILTERS, *, limit: int = 100, offset: int = 0
) -> Page[Evaluation]:
    """The evaluations matching `filters`, newest first: one page and how many match."""
    return list_page(session, Evaluation, filters, limit=limit, offset=offset)


def get_evaluation(session: Session, evaluation_id: str) -> Evaluation:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise NotFoundError(f"evaluation {evaluation_id} does not exist")
    return evaluation


def execute_evaluation(context: JobContext, evaluation_id: str) -> JobState:
    """Run a queued evaluation, or rerun one whose worker died; idempotent otherwise."""
    return execute(context, Evaluation, evaluation_id, _evaluate)


def work_folder(context: JobContext, evaluation_id: str) -> Path:
    return work_folder_of(context, Evaluation, evaluation_id)


@dataclass
class _EvaluationRun:
    """What the stages of an evaluation share: read at its start, the report as it grows."""

    work: Work
    spec: EvaluationSpec
    rss: RssHolesSettings | None
    # Read at the start (_read_inputs): the model, the foundation its forgetting is measured
    # against and that foundation's head, and the datasets' configurations by role.
    source: ModelSource = field(init=False)
    foundation_name: str | None = field(init=False)
    head: str | None = field(init=False)
    configs: dict[str, list[Atoms]] = field(init=False)
    # A quarter of the evaluated job's training time; a foundation's evaluation the default.
    md_budget_s: float = field(init=False)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> JobContext:
        return self.work.context

    @property
    def folder(self) -> Path:
        return work_folder(self.context, self.work.row_id)


def _evaluate(work: Work) -> None:
    with session_scope(work.context.sessions) as session:
        spec = EvaluationSpec.model_validate(get_evaluation(session, work.row_id).spec)
    run = _EvaluationRun(work, spec, rss_settings(spec))
    # Each stage records its own stage names; work.stage stops a cancelled evaluation there.
    run_stages(EVALUATION_STAGES, run, record=work.stage, should_stop=work.stopped)
    work.succeed(report=run.report)


def _read_inputs(run: _EvaluationRun) -> None:
    context, spec = run.context, run.spec
    with session_scope(context.sessions) as session:
        run.source, run.foundation_name, run.head = _model_source(session, context, spec)
        run.md_budget_s = md_budget_s(_training_seconds(session, spec))
        roles = {"test": spec.dataset}
        if spec.kind == "standard":
            roles["replay"] = spec.settings.replay_dataset
            roles["reference"] = spec.settings.reference_dataset
        if run.rss is not None and not run.rss.compositions and spec.model.job is not None:
            roles["train"] = get_job(session, spec.model.job).spec["train_dataset"]
        files = {
            role: context.storage.local_path(get_dataset(session, dataset_id).storage_key)
            for role, dataset_id in roles.items()
            if dataset_id is not None
        }
    run.configs = {role: read_configurations(path) for role, path in files.items()}
    if spec.model.foundation_model is not None:
        run.source = _single_head(context, spec.model.foundation_model, run.head, run.folder)


def _standard_suite(run: _EvaluationRun) -> None:
    if run.spec.kind != "standard":
        return
    context, configs = run.context, run.configs
    foundation = None
    if run.foundation_name is not None and configs.get("replay") is not None:
        foundation = load_foundation(
            _single_head(context, run.foundation_name, run.head, run.folder), context.device
        )
    data = EvaluationData(
        test=configs["test"], replay=configs.get("replay"), reference=configs.get("reference")
    )
    run.report = evaluate_model(
        load_model_source(run.source, context.device),
        data,
        run.spec.settings,
        foundation=foundation,
        on_stage=run.work.stage,
        on_steps=_StepsRecorder(run.work, context.progress_interval_s),
        device=context.device,
        md_budget_s=run.md_budget_s,
    )


class _StepsRecorder:
    """MD progress on the evaluation's stage ("md 1/1 120/800 steps"), written at most every
    `interval_s`: a step takes milliseconds and a row update does too. Through work.stage, so a
    cancelled evaluation stops inside its MD run, not after it."""

    def __init__(self, work: Work, interval_s: float) -> None:
        self.work = work
        self.interval_s = interval_s
        self._last_write = -math.inf

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_write < self.interval_s:
            return
        self._last_write = now
        self.work.stage(f"{stage} {done}/{total} steps")


def _rss_holes(run: _EvaluationRun) -> None:
    if run.rss is None:
        return
    context, spec, folder = run.context, run.spec, run.folder
    flagged = folder / RSS_FLAGGED_FILE
    run.report["rss_holes"] = rss_holes_stage(
        run.rss,
        run.configs.get("test") or run.configs.get("train") or [],
        run.source,
        flagged,
        model_name=spec.model.job or spec.model.foundation_model or "model",
        foundation=(
            _single_head(context, run.foundation_name, run.head, folder)
            if run.foundation_name
            else None
        ),
        cache_folder=context.cache.folder / "rss" if context.cache is not None else None,
        device=context.device,
        on_stage=run.work.stage,
    )
    key = evaluation_artifact_key(run.work.row_id, RSS_FLAGGED_FILE)
    context.storage.put_file(key, flagged)


EVALUATION_STAGES: list[Stage[_EvaluationRun]] = [
    Stage(None, _read_inputs),
    Stage(None, _standard_suite),
    Stage(None, _rss_holes),
]


def _single_head(context: JobContext, name: str, head: str | None, folder: Path) -> FoundationModel:
    """The foundation's file with the evaluated head alone (core.registry.foundation_heads)."""
    foundation = context.registry.resolve(name)
    working, _, _ = working_foundation(
        foundation, load_foundation(foundation, context.device), head, folder / name
    )
    return working


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
    assert spec.model.job is not None  # ModelReference names exactly one of job, foundation
    job = _succeeded_job(session, spec.model.job)
    job_spec = JobSpec.model_validate(job.spec)
    # A job's model is compared with the head it was fine-tuned from unless told otherwise.
    head = spec.foundation_head or (None if spec.foundation_model else job_spec.foundation_head)
    assert job.model_key is not None  # _succeeded_job refuses a job without a model
    source = context.storage.local_path(job.model_key)
    return source, spec.foundation_model or job_spec.foundation_model, head


def _training_seconds(session: Session, spec: EvaluationSpec) -> float | None:
    if spec.model.job is None:
        return None
    actual = (get_job(session, spec.model.job).cost or {}).get("actual") or {}
    return actual.get("training_seconds")


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
