"""Strategy sweeps: the study's central workflow — several strategies side by side on the same
data, compared by target accuracy against retained robustness — as one request."""

import itertools
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, undefer_group

from core.errors import InvalidSpecError, NotFoundError
from core.registry.foundations import FoundationRegistry
from core.reporting.report_models import (
    DimersReport,
    ErrorMetricsReport,
    EvaluationSections,
    RdfReport,
)
from core.reporting.sweep_models import SweepChoice, SweepRecommendation, SweepRow
from core.science.spec import FOUNDATION_E0_METHODS, JobSpec, ReplaySpec, SpecModel
from core.science.strategy_table import (
    LORA_STRATEGIES,
    REPLAY_STRATEGIES,
    STRATEGY_NAMES,
    StrategyName,
    traits_of,
)
from core.service.jobs import TERMINAL_STATES, transition
from core.service.listing import NO_FILTERS, ListFilters, Page, list_page
from core.service.models import Job, JobState, Sweep
from core.service.run_labels import MAX_TAGS, RunName, RunTags
from core.workflows.early_stopping import stopped_jobs
from core.workflows.submission import Screen, submit_job

logger = logging.getLogger(__name__)

TERMINAL = {state.value for state in TERMINAL_STATES}


class SweepGrid(SpecModel):
    model_config = ConfigDict(extra="forbid")

    # The same bounds as the job spec's fields, so a bad grid is refused before any job exists.
    lr: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default=None, min_length=1, max_length=6
    )
    lora_rank: list[Annotated[int, Field(ge=1, le=256)]] | None = Field(
        default=None, min_length=1, max_length=6
    )
    train_fraction: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default=None, min_length=1, max_length=6
    )


class SweepSpec(SpecModel):
    """A base job (data, E0s, hyperparameters) run with each strategy and grid point."""

    model_config = ConfigDict(extra="forbid")

    base: JobSpec
    strategies: list[StrategyName] = Field(default=list(STRATEGY_NAMES), min_length=1)
    # The replay set of the replay strategies (pseudolabel strategies accept unlabelled data).
    replay: ReplaySpec | None = None
    grid: SweepGrid = SweepGrid()
    # Successive halving over the sweep's jobs (core.science.halving): None (the default) turns
    # it on for sweeps of four or more jobs.
    early_stopping: bool | None = None
    # The sweep's own; its jobs carry them too, the base's name and tags taking precedence.
    name: RunName | None = None
    tags: RunTags = {}

    @model_validator(mode="after")
    def _jobs_tags_fit(self) -> "SweepSpec":
        merged = {**self.tags, **self.base.tags}
        if len(merged) > MAX_TAGS:
            raise ValueError(f"the sweep's and its base's tags together exceed {MAX_TAGS}")
        return self

    def labelled(self, job: JobSpec) -> JobSpec:
        """A job of the sweep, named and tagged as the sweep unless its base says otherwise."""
        tags = {**self.tags, **job.tags}
        return job.model_copy(update={"name": job.name or self.name, "tags": tags})

    @model_validator(mode="after")
    def _replay_strategies_have_data(self) -> "SweepSpec":
        needing = sorted(set(self.strategies) & REPLAY_STRATEGIES)
        if needing and self.replay is None:
            raise ValueError(f"{', '.join(needing)} need a replay set: give sweep.replay")
        return self


_Value = TypeVar("_Value")


def _axis(values: list[_Value] | None) -> list[_Value | None]:
    """The grid's values along one axis, or a single unset point when the axis is not swept."""
    return [*values] if values else [None]


def expand(spec: SweepSpec) -> list[JobSpec]:
    """One job spec per strategy and grid point (LoRA ranks apply to LoRA strategies only)."""
    grid = spec.grid
    specs = []
    for name in dict.fromkeys(spec.strategies):
        ranks = _axis(grid.lora_rank if name in LORA_STRATEGIES else None)
        rates, fractions = _axis(grid.lr), _axis(grid.train_fraction)
        points = itertools.product(rates, ranks, fractions)
        for lr, rank, fraction in points:
            strategy: dict[str, Any] = {"name": name}
            if name in REPLAY_STRATEGIES:
                assert spec.replay is not None
                strategy["replay"] = spec.replay.model_dump()
            if rank is not None:
                strategy["rank"] = rank
            changes: dict[str, Any] = {"strategy": strategy}
            if lr is not None:
                changes["hyperparameters"] = {**spec.base.hyperparameters.model_dump(), "lr": lr}
            if fraction is not None:
                changes["train_fraction"] = fraction
            values = {**spec.base.model_dump(), **changes}
            if not traits_of(name).foundation and spec.base.e0s in FOUNDATION_E0_METHODS:
                # Both need a foundation, which a scratch model has none of: its E0s come from
                # the data, as submission chooses them (isolated atoms when there, issue 25).
                del values["e0s"]
            specs.append(_point_spec(name, values))
    return specs


def _point_spec(strategy: str, values: dict[str, Any]) -> JobSpec:
    # The base is valid on its own; a strategy of the sweep may still refuse part of it (replay
    # strategies refuse e0s='average'): the user's error, named with the strategy, not a 500.
    try:
        return JobSpec.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(item["msg"] for item in error.errors())
        raise InvalidSpecError(
            f"strategy {strategy} cannot run this sweep's base: {problems}"
        ) from None


def submit_sweep(
    session: Session, spec: SweepSpec, registry: FoundationRegistry, screen: Screen | None = None
) -> tuple[Sweep, list[Job]]:
    """Create the sweep and its jobs in one transaction; the caller enqueues the jobs."""
    sweep = Sweep(spec=spec.model_dump(mode="json"), name=spec.name, tags=spec.tags)
    session.add(sweep)
    session.flush()
    jobs = [
        submit_job(
            session,
            spec.labelled(job_spec),
            registry,
            sweep_id=sweep.id,
            commit=False,
            screen=screen,
        )
        for job_spec in expand(spec)
    ]
    session.commit()
    logger.info("sweep=%s queued %d jobs", sweep.id, len(jobs))
    return sweep, jobs


def get_sweep(session: Session, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFoundError(f"sweep {sweep_id} does not exist")
    return sweep


def cancel_sweep(session: Session, sweep_id: str) -> list[str]:
    """Cancel every job of the sweep that has not ended; returns their ids. A job that ends
    while this runs keeps its outcome."""
    get_sweep(session, sweep_id)
    cancelled = []
    for job in sweep_jobs(session, sweep_id):
        if job.state in TERMINAL_STATES:
            continue
        if transition(session, job.id, job.state, JobState.CANCELLED):
            cancelled.append(job.id)
    logger.info("sweep=%s cancelled %d job(s)", sweep_id, len(cancelled))
    return cancelled


def sweep_jobs(session: Session, sweep_id: str) -> list[Job]:
    # The comparison table reads every job's metrics: one query, not one per job.
    query = (
        select(Job)
        .where(Job.sweep_id == sweep_id)
        .order_by(Job.created_at)
        .options(undefer_group("measured"))
    )
    return list(session.scalars(query))


def comparison_row(job: Job) -> dict[str, Any]:
    """One line of the comparison table (SweepRow as JSON), from what the job measured."""
    measured = EvaluationSections.from_json(job.metrics)
    test = (measured.accuracy or {}).get("test") or ErrorMetricsReport()
    dimers = measured.dimers
    trainable = (job.checks or {}).get("trainable_parameters") or {}
    strategy = job.spec["strategy"]
    wall = None
    if job.started_at and job.finished_at:
        wall = (job.finished_at - job.started_at).total_seconds()
    return SweepRow(
        job_id=job.id,
        strategy=strategy["name"],
        lr=(job.effective_hyperparameters or {}).get("lr"),
        lora_rank=strategy.get("rank"),
        train_fraction=job.spec.get("train_fraction", 1.0),
        state=job.state.value,
        test_energy_rmse_mev_per_atom=test.energy_rmse_mev_per_atom,
        test_energy_mae_mev_per_atom=test.energy_mae_mev_per_atom,
        test_forces_rmse_mev_per_a=test.forces_rmse_mev_per_a,
        test_forces_mae_mev_per_a=test.forces_mae_mev_per_a,
        forgetting_ratio=measured.forgetting.force_rmse_ratio if measured.forgetting else None,
        md_stable=measured.md_stable(),
        rdf_emd_mean=_mean_emd(measured.rdf),
        **_hole_counts(dimers),
        rss_hole_rate=measured.rss_holes.lowest_pressure_rate() if measured.rss_holes else None,
        trainable_fraction=trainable.get("fraction"),
        wall_time_s=wall,
        warnings=len(job.warnings),
        not_measured=measured.not_measured,
        error=job.error,
    ).to_json()


def _mean_emd(rdf: RdfReport | None) -> float | None:
    emds = [pair.emd for pair in (rdf.pairs.values() if rdf else []) if pair.emd is not None]
    return sum(emds) / len(emds) if emds else None


def _hole_counts(dimers: DimersReport | None) -> dict[str, int | None]:
    curves = dimers.curves() if dimers else []
    inherited = dimers.foundation_holes if dimers else None
    return {
        "dimer_holes": sum(bool(curve.hole) for curve in curves) if curves else None,
        "foundation_dimer_holes": len(inherited) if inherited is not None else None,
        # Holes the foundation does not have (all of them for scratch, or before foundation
        # holes were recorded): what recommend() holds against a job.
        "new_dimer_holes": (
            len(set(dimers.holes) - set(inherited or [])) if dimers and curves else None
        ),
    }


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which strategy to deploy, with the measured reason (science.md §4); SweepRecommendation
    as JSON."""
    table = [SweepRow.from_json(row) for row in rows]
    done = [row for row in table if row.state == JobState.SUCCEEDED.value]
    # Holes inherited from the foundation are no mark against a fine-tuning strategy.
    sane = [row for row in done if not row.new_dimer_holes and row.md_stable is not False]
    broad = _best(
        sane,
        lambda row: row.forgetting_ratio,
        "lowest forgetting ratio (replay-set force error relative to the foundation's)",
        table,
        "forgetting",
    )
    if broad is None and done:
        measured = any(row.forgetting_ratio is not None for row in done)
        unmeasured = [
            f"{_label(row)}: {reason}"
            for row in done
            if (reason := (row.not_measured or {}).get("forgetting")) is not None
        ]
        reason = (
            "every job with a forgetting ratio has dimer holes its foundation lacks or unstable MD"
            if measured
            else f"forgetting could not be measured ({'; '.join(unmeasured)})"
            if unmeasured
            else "no forgetting was measured: give base.evaluation.replay_dataset, a "
            "labelled pretraining-like set, to judge breadth"
        )
        broad = SweepChoice(strategy=None, job_id=None, reason=reason)
    single = _best(
        done,
        lambda row: row.test_forces_rmse_mev_per_a,
        "lowest test force RMSE (meV/Å)",
        table,
        "accuracy",
    )
    return SweepRecommendation(single_system=single, broad_use=broad).to_json()


def _best(
    rows: list[SweepRow],
    score: Callable[[SweepRow], float | None],
    reason: str,
    table: list[SweepRow],
    section: str,
) -> SweepChoice | None:
    """The lowest score among `rows`, citing every number compared and naming each job of the
    table that was not (failed, or its `section` not measured, with the reason): a lone
    survivor is said to be one (issue 25)."""
    scored = [(value, row) for row in rows if (value := score(row)) is not None]
    if not scored:
        return None
    value, best = min(scored, key=lambda item: item[0])
    digits = distinguishing_digits([value for value, _ in scored])
    compared = ", ".join(
        f"{_label(row)} {value:.{digits}g}" for value, row in sorted(scored, key=_first)
    )
    text = f"{reason}: {compared}"
    left_out = [_why_left_out(row, section) for row in table if row not in [r for _, r in scored]]
    if left_out:
        only = "the only job" if len(scored) == 1 else f"{len(scored)} of {len(table)} jobs"
        text += f"; {only} compared ({'; '.join(left_out)})"
    return SweepChoice(strategy=best.strategy, job_id=best.job_id, reason=text)


def distinguishing_digits(values: list[float], fewest: int = 3, most: int = 6) -> int:
    """Significant digits that print different values differently (a best of 1.0012 and a
    runner-up of 1.0015 both read "1" at three), between `fewest` and `most`."""
    distinct = set(values)
    for digits in range(fewest, most):
        if len({f"{value:.{digits}g}" for value in distinct}) == len(distinct):
            return digits
    return most


def _first(item: tuple[float, SweepRow]) -> float:
    return item[0]


def _label(row: SweepRow) -> str:
    return f"{row.strategy} ({(row.job_id or '')[:8]})"


def _why_left_out(row: SweepRow, section: str) -> str:
    if row.state != JobState.SUCCEEDED.value:
        return f"{_label(row)} {row.state}" + (f": {row.error}" if row.error else "")
    reason = (row.not_measured or {}).get(section)
    if reason is not None:
        return f"{_label(row)} not measured: {reason}"
    if row.new_dimer_holes or row.md_stable is False:
        return f"{_label(row)} has new dimer holes or unstable MD"
    return f"{_label(row)} has no {section} number"


def list_sweeps(
    session: Session, filters: ListFilters = NO_FILTERS, *, limit: int = 100, offset: int = 0
) -> Page[dict[str, Any]]:
    """Sweeps matching `filters`, newest first (the project's own, through the scoped session),
    each with its strategies and how many of its jobs are in each state; and how many match."""
    page = list_page(session, Sweep, filters, limit=limit, offset=offset)
    listed = []
    for sweep in page.data:
        states = [job.state.value for job in sweep_jobs(session, sweep.id)]
        listed.append(
            {
                "id": sweep.id,
                "name": sweep.name,
                "tags": sweep.tags or {},
                "created_at": sweep.created_at,
                "strategies": sweep.spec.get("strategies"),
                "jobs": {state: states.count(state) for state in sorted(set(states))},
                "finished": all(state in TERMINAL for state in states),
                "url": f"/sweeps/{sweep.id}",
            }
        )
    return Page(data=listed, total=page.total, offset=offset)


def sweep_summary(session: Session, sweep_id: str) -> dict[str, Any]:
    sweep = get_sweep(session, sweep_id)
    jobs = sweep_jobs(session, sweep_id)
    rows = [comparison_row(job) for job in jobs]
    states = [row["state"] for row in rows]
    return {
        "id": sweep.id,
        "name": sweep.name,
        "tags": sweep.tags or {},
        "created_at": sweep.created_at,
        "spec": sweep.spec,
        "jobs": {state: states.count(state) for state in sorted(set(states))},
        "finished": all(state in TERMINAL for state in states),
        "table": rows,
        "recommendation": recommend(rows),
        "early_stopping": stopped_jobs(jobs),
    }
