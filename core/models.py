"""Database tables (SQLAlchemy 2, typed). Request/response shapes live in api/schemas.py."""

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    summary: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Sweep(Base):
    """Several strategies (and grid points) on the same data; each point is a job."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", values_callable=lambda e: [m.value for m in e]),
        default=JobState.QUEUED,
        index=True,
    )
    spec: Mapped[dict[str, Any]]
    train_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    # What the job is doing now ("e0s", "training", "evaluating"), shown while it runs.
    stage: Mapped[str | None] = mapped_column(String(64), default=None)
    epochs: Mapped[list[Any]] = mapped_column(default=list)
    e0s: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    model_key: Mapped[str | None] = mapped_column(String(512), default=None)
    # Replay strategies: the full model with its replay head, delivered on request.
    multihead_model_key: Mapped[str | None] = mapped_column(String(512), default=None)
    replay_dataset_id: Mapped[str | None] = mapped_column(String(32), default=None)
    sweep_id: Mapped[str | None] = mapped_column(
        ForeignKey("sweeps.id"), default=None, index=True
    )
    # Guardrails a researcher should read (E0 mismatch, replay + LoRA, ...), kept with the job.
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # What the strategy must mean, verified on the delivered model (E0s, frozen weights, LoRA).
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    effective_hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Evaluation(Base):
    """One model (a job's or a foundation) evaluated on datasets, outside any training job."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", values_callable=lambda e: [m.value for m in e]),
        default=JobState.QUEUED,
    )
    spec: Mapped[dict[str, Any]]
    stage: Mapped[str | None] = mapped_column(String(64), default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
