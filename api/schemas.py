"""Request and response models of the HTTP API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.models import Dataset, Job, JobState


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


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class JobProgress(BaseModel):
    stage: str | None
    epochs_done: int
    max_epochs: int
    latest: dict[str, Any] | None


class JobPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    state: JobState
    spec: dict[str, Any]
    progress: JobProgress
    epochs: list[dict[str, Any]]
    e0s: dict[str, Any] | None
    warnings: list[str]
    checks: dict[str, Any] | None
    effective_hyperparameters: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    model_url: str | None
    multihead_model_url: str | None
    metrics_url: str | None

    @classmethod
    def of(cls, job: Job) -> "JobPublic":
        # mace logs an "epoch None" record before any training: the initial validation error.
        trained = [
            entry
            for entry in job.epochs
            if entry.get("epoch") is not None and entry.get("head") != "replay"
        ]
        done = job.state is JobState.SUCCEEDED
        return cls(
            id=job.id,
            state=job.state,
            spec=job.spec,
            progress=JobProgress(
                stage=job.stage,
                epochs_done=len({entry["epoch"] for entry in trained}),
                max_epochs=job.spec["hyperparameters"]["max_num_epochs"],
                latest=job.epochs[-1] if job.epochs else None,
            ),
            epochs=job.epochs,
            e0s=job.e0s,
            warnings=job.warnings,
            checks=job.checks,
            effective_hyperparameters=job.effective_hyperparameters,
            error=job.error,
            attempts=job.attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
            model_url=f"/jobs/{job.id}/model" if done else None,
            multihead_model_url=(
                f"/jobs/{job.id}/model?variant=multihead" if job.multihead_model_key else None
            ),
            metrics_url=f"/jobs/{job.id}/metrics" if done else None,
        )


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


class FoundationPublic(BaseModel):
    name: str
    source: str
    available: bool
