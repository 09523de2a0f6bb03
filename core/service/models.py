"""Database tables (SQLAlchemy 2, typed). Request/response shapes live in api/schemas.py."""

import enum
import uuid
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, column_property, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# What exists before any project is made, and what everything belongs to when auth is off.
DEFAULT_PROJECT_ID = "default"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    # sha256 of the token; the token itself is shown once, when issued.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class ProjectOwned:
    """Mixin of every table whose rows belong to a project (core.service.scoping filters by it)."""

    # Tokens of other projects get 404 for the row, as if it did not exist.
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id"), default=DEFAULT_PROJECT_ID, index=True
    )


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A sweep's successive halving stopped the job at a rung (core.science.halving): its model
    # (the best checkpoint so far) and learning curve are kept; it was not evaluated.
    STOPPED_EARLY = "stopped_early"


class Lifecycle:
    """Mixin of the work rows a worker runs besides jobs (evaluations, replay sets): the state
    machine of core.service.jobs.transition, what is being done now, and when; the lease, attempts
    and dispatch record that jobs also have (core/service/leases.py, core/service/dispatch.py)."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", values_callable=lambda e: [m.value for m in e]),
        default=JobState.QUEUED,
    )
    stage: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # When its task reached the broker; NULL while it never did (core/service/dispatch.py re-sends
    # it).
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Dataset(ProjectOwned, Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    summary: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Sweep(ProjectOwned, Base):
    """Several strategies (and grid points) on the same data; each point is a job."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    spec: Mapped[dict[str, Any]]
    # What a researcher finds it by (core/service/run_labels.py), copied from the spec.
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The parent run of its jobs' runs in MLflow, once the first of them was logged.
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Lists sort on it, newest first.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class Job(ProjectOwned, Base):
    __tablename__ = "jobs"
    # GET /jobs lists a project's jobs newest first, a page at a time (migration 0012).
    __table_args__ = (Index("ix_jobs_project_id_created_at", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", values_callable=lambda e: [m.value for m in e]),
        default=JobState.QUEUED,
        index=True,
    )
    spec: Mapped[dict[str, Any]]
    # What a researcher finds it by (core/service/run_labels.py), copied from the spec; a sweep's
    # jobs carry the sweep's unless their base names its own.
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Its run in MLflow, once logged (core/workflows/mlflow_runs.py).
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    train_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    # What the job is doing now ("e0s", "training", "evaluating"), shown while it runs.
    stage: Mapped[str | None] = mapped_column(String(64), default=None)
    # Inside a long stage: {"stage": "md 1/3", "done": 120, "total": 800, "unit": "steps"}.
    stage_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The learning curve and the split (positions of every configuration) grow with the run and
    # the data: a status read leaves them out (core.service.jobs.get_job loads them when asked) and
    # shows the progress from the two columns below, kept in step with epochs by _summarize_epochs.
    epochs: Mapped[list[Any]] = mapped_column(default=list, deferred=True)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    # The newest validation record of the head being fine-tuned (not the replay head).
    latest_epoch: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    e0s: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # What the evaluation measured and the model card: the heavy parts of the row, loaded only
    # by what reads them (reports, metrics, model card), not by every status read.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, default=None, deferred=True, deferred_group="measured"
    )
    # The report's opening verdicts ([{label, value, level}], core.reporting.verdicts), graded
    # when the job succeeded: small, so that GET /jobs/{id} shows them without the metrics.
    verdicts: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    model_key: Mapped[str | None] = mapped_column(String(512), default=None)
    # Replay strategies: the full model with its replay head, delivered on request.
    multihead_model_key: Mapped[str | None] = mapped_column(String(512), default=None)
    replay_dataset_id: Mapped[str | None] = mapped_column(String(32), default=None)
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id"), default=None, index=True)
    # Guardrails a researcher should read (E0 mismatch, replay + LoRA, ...), kept with the job.
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # What the strategy must mean, verified on the delivered model (E0s, frozen weights, LoRA).
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    effective_hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Issue 9: preflight findings, which configuration went where, predicted vs actual cost,
    # tested export variants (their storage keys and checks) and the model card.
    preflight: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    split: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, deferred=True)
    cost: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # A sweep's successive halving: the verdict at each rung the job reached (issue 27).
    halving: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    exports: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    model_card: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, default=None, deferred=True, deferred_group="measured"
    )
    # In the class body `model_card` is still the MappedColumn that `mapped_column` made; the
    # Mapped[...] annotation above is what instances see.
    has_model_card: Mapped[bool] = column_property(
        cast("MappedColumn[Any]", model_card).column.is_not(None)
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The worker running the job renews its lease; once it expires the worker is presumed dead
    # and the job is re-queued (core/service/leases.py). NULL: no worker holds it.
    lease_owner: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # When its task reached the broker; NULL while it never did (core/service/dispatch.py re-sends
    # it).
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    # The first start; a run after a worker died sets resumed_at and keeps this.
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


def is_trained_record(entry: dict[str, Any]) -> bool:
    """A validation record of an epoch trained on the head being fine-tuned: mace logs an
    "epoch None" record (the validation before training), and replay jobs one per head."""
    return entry.get("epoch") is not None and entry.get("head") != "replay"


@event.listens_for(Job.epochs, "set")
def _summarize_epochs(job: Job, epochs: list[Any] | None, _old: Any, _initiator: Any) -> None:
    # Every write of the learning curve assigns it whole (JSON columns track no mutation), so
    # the summary a status read shows cannot drift from it.
    epochs = epochs or []
    job.epochs_done = len({entry["epoch"] for entry in epochs if is_trained_record(entry)})
    job.latest_epoch = next(
        (entry for entry in reversed(epochs) if entry.get("head") != "replay"), None
    )


class Evaluation(Lifecycle, ProjectOwned, Base):
    """One model (a job's or a foundation) evaluated on datasets, outside any training job."""

    __tablename__ = "evaluations"

    spec: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class ReplaySet(Lifecycle, ProjectOwned, Base):
    """A diverse, foundation-labelled replay set built for the user's elements (issue 12)."""

    __tablename__ = "replay_sets"

    spec: Mapped[dict[str, Any]]
    # sha256 of everything the set depends on: the same inputs are never built twice.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The labelled structures, a regular dataset usable wherever a replay dataset id is.
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class WorkerHeartbeat(Base):
    """A worker process's last sign of life; readiness needs one within the job lease."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class FoundationRecord(Base):
    """A foundation model every process can use: its name pinned to the sha256 of a file held in
    artifact storage under `storage_key` (core/registry/foundation_store.py)."""

    __tablename__ = "foundation_models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(512))
    # "upload" (POST /foundation-models), "folder" (imported from a models folder),
    # "published" (downloaded from mace-torch's address on first use) or "promoted" (a
    # succeeded job's model, POST /jobs/{id}/promote).
    source: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What a request needs to know about the model (core.registry.safe_model.ModelFacts:
    # elements, heads, E0s, r_max, size, dtype), recorded at registration so that no request
    # loads the file; and the sha256 of the file as it was uploaded or downloaded (the stored
    # file is its safe form, pinned by `sha256`).
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    upload_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A foundation promoted from a job (source "promoted"): where it came from
    # (core.workflows.promotion.Lineage); None for every other source.
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)


class LogLine(Base):
    """One line of a running job's mace-torch output; only the last few per job are kept (the
    full log becomes an artifact at the end), so the API streams it without a shared folder."""

    __tablename__ = "log_lines"

    # The job's (or evaluation's) id: lines of any work row, numbered from 1 without gaps.
    owner_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    line: Mapped[str] = mapped_column(Text)
