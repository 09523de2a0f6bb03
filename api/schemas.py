"""Request and response models of the HTTP API."""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.reporting.report_models import EvaluationSections
from core.science.spec import SpecModel
from core.service.jobs import JobPart
from core.service.listing import Page
from core.service.models import Dataset, Evaluation, Job, JobState, ReplaySet

BINARY = {"schema": {"type": "string", "format": "binary"}}


def file_response(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that sends a file, for `responses=`: its media type in OpenAPI."""
    return {200: {"description": description, "content": {media_type: BINARY}}}


def also_as(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a JSON route that can also answer in `media_type` (format=html, md)."""
    content = {media_type: {"schema": {"type": "string"}}}
    return {200: {"description": description, "content": content}}


class DatasetPublic(BaseModel):
    id: str
    name: str
    sha256: str
    created_at: datetime
    summary: dict[str, Any]

    @classmethod
    def of(cls, dataset: Dataset) -> "DatasetPublic":
        return cls(
            id=dataset.id,
            name=dataset.name,
            sha256=dataset.sha256,
            created_at=dataset.created_at,
            summary=dataset.summary,
        )


class Listed(BaseModel):
    """What every list answers beside its `data`: `count` (on this page), `total` (matching the
    filters) and `has_more` (a next page exists: ask again with offset + count)."""

    count: int
    total: int
    has_more: bool

    @staticmethod
    def paging(page: Page[Any]) -> dict[str, Any]:
        return {"count": len(page.data), "total": page.total, "has_more": page.has_more}


class DatasetsPublic(Listed):
    data: list[DatasetPublic]


class JobProgress(BaseModel):
    stage: str | None
    epochs_done: int
    max_epochs: int
    # The newest validation record of the head being fine-tuned (not a replay head).
    latest: dict[str, Any] | None
    # Inside a long stage: {"stage": "md 1/3", "done": 120, "total": 800, "unit": "steps"}.
    steps: dict[str, Any] | None = None


class JobPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    # What a researcher finds it by (GET /jobs?name=...&tag=key=value).
    name: str | None = None
    tags: dict[str, str] = {}
    state: JobState
    spec: dict[str, Any]
    progress: JobProgress
    # The learning curve and the split grow with the run and the data: null unless asked for
    # with `?include=epochs` / `?include=split` (the events stream sends the epochs too).
    epochs: list[dict[str, Any]] | None = None
    e0s: dict[str, Any] | None
    warnings: list[str]
    checks: dict[str, Any] | None
    effective_hyperparameters: dict[str, Any] | None
    # Issue 9: preflight findings, the recorded split, cost predicted vs actual, tested exports.
    preflight: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    exports: dict[str, Any] | None = None
    error: str | None
    attempts: int
    # True once the model passed its checks: it downloads while the evaluation still runs.
    model_available: bool = False
    created_at: datetime
    started_at: datetime | None
    # Set when the job resumed after its worker died; started_at stays the first start.
    resumed_at: datetime | None = None
    finished_at: datetime | None
    updated_at: datetime
    model_url: str | None
    multihead_model_url: str | None
    metrics_url: str | None
    model_card_url: str | None = None
    # Its run in MLflow, once logged there (MLFT_MLFLOW_TRACKING_URI).
    mlflow_run_id: str | None = None

    @classmethod
    def of(cls, job: Job, include: Collection[JobPart] = ()) -> "JobPublic":
        """`include`: the deferred parts to show, which the caller loaded with the job."""
        done = job.state is JobState.SUCCEEDED
        available = job.model_key is not None
        return cls(
            id=job.id,
            name=job.name,
            tags=job.tags or {},
            state=job.state,
            spec=job.spec,
            progress=JobProgress(
                stage=job.stage,
                epochs_done=job.epochs_done,
                max_epochs=job.spec["hyperparameters"]["max_num_epochs"],
                latest=job.latest_epoch,
                steps=job.stage_progress,
            ),
            epochs=job.epochs if "epochs" in include else None,
            e0s=job.e0s,
            warnings=job.warnings,
            checks=job.checks,
            effective_hyperparameters=job.effective_hyperparameters,
            preflight=job.preflight,
            split=job.split if "split" in include else None,
            cost=job.cost,
            exports=job.exports,
            error=job.error,
            attempts=job.attempts,
            model_available=available,
            created_at=job.created_at,
            started_at=job.started_at,
            resumed_at=job.resumed_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
            model_url=f"/jobs/{job.id}/model" if available else None,
            multihead_model_url=(
                f"/jobs/{job.id}/model?variant=multihead" if job.multihead_model_key else None
            ),
            metrics_url=f"/jobs/{job.id}/metrics" if done else None,
            model_card_url=f"/jobs/{job.id}/model-card" if job.has_model_card else None,
            mlflow_run_id=job.mlflow_run_id,
        )


class JobsPublic(Listed):
    data: list[JobPublic]


class FoundationPublic(BaseModel):
    """A foundation model; local ones with what their file holds (read once per sha256)."""

    name: str
    source: str
    available: bool
    # "building" while the demo model is trained on first start, with its progress.
    status: str = "ready"
    progress: dict[str, Any] | None = None
    sha256: str | None = None
    architecture: str | None = None
    # Readout heads, one per level of theory; a job picks one with `foundation_head`.
    heads: list[str] | None = None
    default_head: str | None = None
    elements: list[str] | None = None
    r_max: float | None = None
    parameters: int | None = None
    dtype: str | None = None


class FoundationRegistered(BaseModel):
    name: str
    sha256: str


class ReplaySetPublic(BaseModel):
    """A replay set: state, progress while building, and once built its dataset, composition,
    source histogram, coverage of the training data and provenance."""

    id: str
    state: JobState
    spec: dict[str, Any]
    content_hash: str
    stage: str | None
    progress: dict[str, Any] | None
    dataset_id: str | None
    size: int | None
    cut: str | None
    composition: dict[str, Any] | None
    source_histogram: dict[str, int] | None
    coverage: dict[str, Any] | None
    report: dict[str, Any] | None
    error: str | None
    # Builds started; a worker that died mid-build leaves the set to be rebuilt
    # (core/service/leases.py).
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, replay_set: ReplaySet) -> "ReplaySetPublic":
        report = replay_set.report or {}
        return cls(
            id=replay_set.id,
            state=replay_set.state,
            spec=replay_set.spec,
            content_hash=replay_set.content_hash,
            stage=replay_set.stage,
            progress=replay_set.progress,
            dataset_id=replay_set.dataset_id,
            size=report.get("size"),
            cut=report.get("cut"),
            composition=report.get("composition"),
            source_histogram=report.get("source_histogram"),
            coverage=report.get("coverage"),
            report=replay_set.report,
            error=replay_set.error,
            attempts=replay_set.attempts,
            created_at=replay_set.created_at,
            started_at=replay_set.started_at,
            finished_at=replay_set.finished_at,
        )


class ReplaySetsPublic(BaseModel):
    data: list[ReplaySetPublic]
    count: int


class ProjectCreate(SpecModel):
    name: str = Field(min_length=1, max_length=255, examples=["catalysis-lab"])


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    created_at: datetime


class TokenCreate(SpecModel):
    name: str = Field(min_length=1, max_length=255, examples=["alice-laptop"])


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    project_id: str
    created_at: datetime
    revoked_at: datetime | None


class TokenIssued(BaseModel):
    id: str
    name: str
    project_id: str
    # Shown once: send it as `Authorization: Bearer <token>`.
    token: str


class StrategyPublic(BaseModel):
    """One strategy's traits (core.science.strategy_table): what trains, its preset from the
    study."""

    name: str
    summary: str
    lr: float
    ema_decay: float
    clip_grad: float
    # mace's --freeze level; None when the embedding and interaction blocks train.
    freeze_level: int | None
    lora: bool
    replay: bool
    # "never", "always", or "optional" (the spec's `pseudolabel` field decides).
    pseudolabels: str
    # Which parameters train: "all", "unfrozen" (past the freeze level) or "lora_adapters".
    trainable: str
    # False for scratch alone: it trains without a foundation model.
    foundation: bool
    # A known-bad choice from the study: jobs with it carry this warning.
    caution: str | None


class E0MethodPublic(BaseModel):
    # "explicit" is given in a spec as {element: eV} values, the others by name.
    name: str
    summary: str


class StrategiesPublic(BaseModel):
    strategies: list[StrategyPublic]
    e0_methods: list[E0MethodPublic]


class EvaluationPublic(BaseModel):
    """An evaluation: its state and, once done, the sections it measured."""

    id: str
    state: JobState
    stage: str | None
    spec: dict[str, Any]
    report: EvaluationSections | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, evaluation: Evaluation) -> "EvaluationPublic":
        return cls(
            id=evaluation.id,
            state=evaluation.state,
            stage=evaluation.stage,
            spec=evaluation.spec,
            report=EvaluationSections.from_json(evaluation.report) if evaluation.report else None,
            error=evaluation.error,
            attempts=evaluation.attempts,
            created_at=evaluation.created_at,
            started_at=evaluation.started_at,
            finished_at=evaluation.finished_at,
        )


class EvaluationsPublic(Listed):
    data: list[EvaluationPublic]


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str  # "ready" or "not ready"
    # Each dependency and what was found: "ok", or why it is not.
    checks: dict[str, str]
