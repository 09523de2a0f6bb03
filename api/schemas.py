"""Request and response models of the HTTP API.

Response models read the rows (`from_attributes`: `JobPublic.model_validate(job)`) and type what
they hold with the report models of core.reporting.report_models and the spec models of
core.science.spec, so the OpenAPI document describes every section a client shows.
"""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import (
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)

from core.data.dataset_summary import DatasetSummary
from core.reporting.report_models import (
    E0sReport,
    EpochReport,
    EvaluationSections,
    JobChecks,
    PreflightResult,
    ReportModel,
    VerdictReport,
)
from core.science.spec import JobSpec, SpecModel
from core.service.jobs import JobPart
from core.service.listing import Page
from core.service.models import Job, JobState


# No return annotation: pydantic would take it as the serialized type, and the OpenAPI document
# would lose the section's model.
def as_stored(value: Any, handler: SerializerFunctionWrapHandler):
    """A section goes out as the row holds it: the keys it has (an older row gets no nulls for
    fields added since), and keys no field declares yet; a spec exactly as it was accepted."""
    if isinstance(value, ReportModel):
        return value.to_json()
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return [as_stored(item, handler) for item in value]
    return handler(value)


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    sha256: str
    created_at: datetime
    summary: DatasetSummary


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
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: str
    # What a researcher finds it by (GET /jobs?name=...&tag=key=value).
    name: str | None = None
    tags: dict[str, str] = {}
    state: JobState
    spec: JobSpec
    progress: JobProgress
    # The learning curve and the split grow with the run and the data: null unless asked for
    # with `?include=epochs` / `?include=split` (the events stream sends the epochs too).
    epochs: list[EpochReport] | None = None
    e0s: E0sReport | None
    # Every element the delivered model knows (issue 25), once its E0s are chosen.
    elements: list[str] | None = None
    warnings: list[str]
    checks: JobChecks | None
    effective_hyperparameters: dict[str, Any] | None
    # Issue 9: preflight findings, the recorded split, cost predicted vs actual, tested exports.
    preflight: PreflightResult | None = None
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
    # The report's opening verdicts, graded when the job succeeded; the MD one says how long the
    # runs lasted beside the study's ("yes, 100 K over 0.1 of 250 ps, ...").
    verdicts: list[VerdictReport] | None = None
    # Its run in MLflow, once logged there (MLFT_MLFLOW_TRACKING_URI).
    mlflow_run_id: str | None = None

    _stored_sections = field_serializer(
        "spec", "epochs", "e0s", "checks", "preflight", mode="wrap"
    )(as_stored)

    @field_validator("spec", mode="wrap")
    @classmethod
    def _spec_as_accepted(cls, spec: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Typed in the document, read as stored: a spec a newer server refuses (a job failed
        # for it) must still read, and the one sent is the one the job was accepted with.
        return spec if isinstance(spec, dict) else handler(spec)

    @classmethod
    def of(cls, job: Job, include: Collection[JobPart] = ()) -> "JobPublic":
        """`include`: the deferred parts to show, which the caller loaded with the job."""
        return cls.model_validate(JobRead(job, include))


class JobRead:
    """A job row as JobPublic reads it: its columns, the deferred parts only when the caller
    loaded them (reading one otherwise is a query per job), and what the API derives from the
    row: the progress and the links that answer."""

    def __init__(self, job: Job, include: Collection[JobPart]) -> None:
        self._job = job
        self._include = include

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    @property
    def epochs(self) -> list[Any] | None:
        return self._job.epochs if "epochs" in self._include else None

    @property
    def split(self) -> dict[str, Any] | None:
        return self._job.split if "split" in self._include else None

    @property
    def progress(self) -> JobProgress:
        job = self._job
        return JobProgress(
            stage=job.stage,
            epochs_done=job.epochs_done,
            max_epochs=job.spec["hyperparameters"]["max_num_epochs"],
            latest=job.latest_epoch,
            steps=job.stage_progress,
        )

    @property
    def elements(self) -> list[str] | None:
        e0s = self._job.e0s
        return E0sReport.from_json(e0s).model_elements() if e0s else None

    @property
    def tags(self) -> dict[str, str]:
        return self._job.tags or {}

    @property
    def model_available(self) -> bool:
        return self._job.model_key is not None

    @property
    def model_url(self) -> str | None:
        return f"/jobs/{self._job.id}/model" if self.model_available else None

    @property
    def multihead_model_url(self) -> str | None:
        job = self._job
        return f"/jobs/{job.id}/model?variant=multihead" if job.multihead_model_key else None

    @property
    def metrics_url(self) -> str | None:
        job = self._job
        return f"/jobs/{job.id}/metrics" if job.state is JobState.SUCCEEDED else None

    @property
    def model_card_url(self) -> str | None:
        return f"/jobs/{self._job.id}/model-card" if self._job.has_model_card else None


class JobsPublic(Listed):
    data: list[JobPublic]


class FoundationPublic(BaseModel):
    """A foundation model; registered ones with what they hold, as recorded at registration."""

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
    # E0s (eV) per head and element.
    e0s: dict[str, dict[str, float]] | None = None
    # `sha256` pins the safe form the service stores; this is the file as it was uploaded.
    upload_sha256: str | None = None
    # How a registered model came in: "upload", "folder" or "promoted" (from a job).
    registered_as: str | None = None
    # A promoted model's lineage: parent foundation {name, sha256, head}, job_id, datasets
    # {role: sha256}, e0s_method, strategy (POST /jobs/{id}/promote).
    lineage: dict[str, Any] | None = None


class FoundationRegistered(BaseModel):
    name: str
    sha256: str
    upload_sha256: str


class ReplaySetPublic(BaseModel):
    """A replay set: state, progress while building, and once built its dataset, composition,
    source histogram, coverage of the training data and provenance."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    state: JobState
    spec: dict[str, Any]
    content_hash: str
    stage: str | None
    progress: dict[str, Any] | None
    dataset_id: str | None
    # Read from the build's report, where they are recorded.
    size: int | None = Field(None, validation_alias=AliasPath("report", "size"))
    cut: str | None = Field(None, validation_alias=AliasPath("report", "cut"))
    composition: dict[str, Any] | None = Field(
        None, validation_alias=AliasPath("report", "composition")
    )
    source_histogram: dict[str, int] | None = Field(
        None, validation_alias=AliasPath("report", "source_histogram")
    )
    coverage: dict[str, Any] | None = Field(None, validation_alias=AliasPath("report", "coverage"))
    report: dict[str, Any] | None
    error: str | None
    # Builds started; a worker that died mid-build leaves the set to be rebuilt
    # (core/service/leases.py).
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


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

    model_config = ConfigDict(from_attributes=True)

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

    @field_validator("report", mode="before")
    @classmethod
    def _nothing_measured_is_none(cls, report: Any) -> Any:
        # An evaluation that measured nothing yet holds no report (an old row may hold {}).
        return report or None


class EvaluationsPublic(Listed):
    data: list[EvaluationPublic]


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str  # "ready" or "not ready"
    # Each dependency and what was found: "ok", or why it is not.
    checks: dict[str, str]
