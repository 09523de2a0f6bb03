from typing import Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import Response

from api.deps import (
    ContextDep,
    DispatchDep,
    LimitParam,
    OffsetParam,
    RegistryDep,
    SessionDep,
    SettingsDep,
)
from api.list_params import SweepFilters
from api.responses import also_as, in_format
from api.schemas import Listed
from core.errors import BrokerUnavailableError
from core.reporting.sweep_models import SweepsListed, SweepSummary
from core.reporting.sweep_page import render_sweep_html
from core.workflows.submission import reference_screen
from core.workflows.sweeps import SweepSpec, cancel_sweep, list_sweeps, submit_sweep, sweep_summary

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepSummary)
def create_sweep(
    spec: SweepSpec,
    session: SessionDep,
    registry: RegistryDep,
    context: ContextDep,
    settings: SettingsDep,
    dispatch_work: DispatchDep,
) -> dict[str, Any]:
    """Run a base job with several strategies (default: all seven and scratch) and an optional
    grid over lr, LoRA rank and training-set fraction; one job per point. 503 with Retry-After
    when the task queue is unreachable: the jobs stay queued and are sent once it is back."""
    sweep, jobs = submit_sweep(session, spec, registry, reference_screen(context, settings))
    for job in jobs:
        try:
            dispatch_work(session, "job", job.id)
        except BrokerUnavailableError as error:
            raise BrokerUnavailableError(
                f"the task queue (broker) cannot be reached, so sweep {sweep.id} could not be "
                "started now; its jobs are saved as queued and are sent automatically once the "
                "broker is back (follow the sweep by its id rather than submitting again)",
                retry_after=error.retry_after,
            ) from error
    return sweep_summary(session, sweep.id)


@router.post("/{sweep_id}/cancel", response_model=SweepSummary)
def cancel(sweep_id: str, session: SessionDep) -> dict[str, Any]:
    """Cancel every job of the sweep that has not ended; running trainings are stopped."""
    cancel_sweep(session, sweep_id)
    return sweep_summary(session, sweep_id)


@router.get("", response_model=SweepsListed)
def read_sweeps(
    session: SessionDep, filters: SweepFilters, limit: LimitParam = 100, offset: OffsetParam = 0
) -> dict[str, Any]:
    """The project's sweeps matching the filters, newest first: strategies and job states of
    each; `total` and `has_more` as every list."""
    page = list_sweeps(session, filters, limit=limit, offset=offset)
    return {"data": page.data, **Listed.paging(page)}


@router.get("/{sweep_id}", response_model=SweepSummary)
def read_sweep(sweep_id: str, session: SessionDep) -> dict[str, Any]:
    """The comparison table (target accuracy, forgetting, MD, EMD, dimer holes, trainable
    fraction, wall time per job) and the recommendation."""
    return sweep_summary(session, sweep_id)


@router.get(
    "/{sweep_id}/report",
    response_model=SweepSummary,
    responses=also_as("text/html", "The comparison (JSON), or with format=html one HTML page"),
)
def read_sweep_report(
    sweep_id: str, session: SessionDep, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | Response:
    summary = sweep_summary(session, sweep_id)
    return in_format(summary, format, html=render_sweep_html)
