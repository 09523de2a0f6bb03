"""The shape of a sweep's comparison and of the sweep list (core.workflows.sweeps), as report
models (core.reporting.report_models): field names are the JSON keys sent to clients."""

from datetime import datetime
from typing import Any

from core.reporting.report_models import ReportModel


class SweepRow(ReportModel):
    """One job of a sweep's comparison table."""

    job_id: str | None = None
    strategy: str | None = None
    lr: float | None = None
    lora_rank: int | None = None
    train_fraction: float | None = None
    state: str | None = None
    test_energy_rmse_mev_per_atom: float | None = None
    test_energy_mae_mev_per_atom: float | None = None
    test_forces_rmse_mev_per_a: float | None = None
    test_forces_mae_mev_per_a: float | None = None
    forgetting_ratio: float | None = None
    md_stable: bool | None = None
    rdf_emd_mean: float | None = None
    dimer_holes: int | None = None
    foundation_dimer_holes: int | None = None
    # Holes the foundation does not have: what the recommendation holds against a job.
    new_dimer_holes: int | None = None
    rss_hole_rate: float | None = None
    trainable_fraction: float | None = None
    wall_time_s: float | None = None
    warnings: int | None = None
    # Sections the job could not measure, with the reason (EvaluationSections.not_measured).
    not_measured: dict[str, str] | None = None
    # The job's error when it failed.
    error: str | None = None


class SweepChoice(ReportModel):
    strategy: str | None = None  # None: undecided, and `reason` says why
    job_id: str | None = None
    reason: str | None = None


class SweepRecommendation(ReportModel):
    single_system: SweepChoice | None = None
    broad_use: SweepChoice | None = None


class SweepStopped(ReportModel):
    job_id: str
    strategy: str | None = None
    after_epochs: int | None = None
    reason: str | None = None


class SweepEarlyStopping(ReportModel):
    """A sweep's successive halving (issue 27): its rule (None: not applied) and the jobs it
    stopped."""

    rule: str | None = None
    stopped: list[SweepStopped] = []


class SweepSummary(ReportModel):
    """GET /sweeps/{id}: the comparison table and the recommendation."""

    id: str
    name: str | None = None
    tags: dict[str, str] = {}
    created_at: datetime | None = None
    spec: dict[str, Any] | None = None
    jobs: dict[str, int] = {}  # how many jobs are in each state
    finished: bool | None = None
    table: list[SweepRow] = []
    recommendation: SweepRecommendation | None = None
    early_stopping: SweepEarlyStopping | None = None


class SweepListed(ReportModel):
    id: str
    name: str | None = None
    tags: dict[str, str] = {}
    created_at: datetime | None = None
    strategies: list[str] | None = None
    jobs: dict[str, int] = {}
    finished: bool | None = None
    url: str | None = None


class SweepsListed(ReportModel):
    data: list[SweepListed]
    count: int
    # Matching the filters in all, and whether a next page exists (as every list answers).
    total: int | None = None
    has_more: bool | None = None
