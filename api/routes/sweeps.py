from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse

from api.deps import (
    ContextDep,
    LimitParam,
    OffsetParam,
    RegistryDep,
    SessionDep,
    SettingsDep,
)
from core.reports import render_sweep_html
from core.submission import reference_screen
from core.sweeps import SweepSpec, list_sweeps, submit_sweep, sweep_summary

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_sweep(
    spec: SweepSpec,
    session: SessionDep,
    registry: RegistryDep,
    context: ContextDep,
    settings: SettingsDep,
    request: Request,
) -> dict[str, Any]:
    """Run a base job with several strategies (default: all seven and scratch) and an optional
    grid over lr, LoRA rank and training-set fraction; one job per point."""
    sweep, jobs = submit_sweep(session, spec, registry, reference_screen(context, settings))
    for job in jobs:
        request.app.state.enqueue(job.id)
    return sweep_summary(session, sweep.id)


@router.get("")
def read_sweeps(
    session: SessionDep, limit: LimitParam = 100, offset: OffsetParam = 0
) -> dict[str, Any]:
    """The project's sweeps, newest first: strategies and job states of each."""
    sweeps = list_sweeps(session, limit=limit, offset=offset)
    return {"data": sweeps, "count": len(sweeps)}


@router.get("/{sweep_id}")
def read_sweep(sweep_id: str, session: SessionDep) -> dict[str, Any]:
    """The comparison table (target accuracy, forgetting, MD, EMD, dimer holes, trainable
    fraction, wall time per job) and the recommendation."""
    return sweep_summary(session, sweep_id)


@router.get("/{sweep_id}/report", response_model=None)
def read_sweep_report(
    sweep_id: str, session: SessionDep, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | HTMLResponse:
    summary = sweep_summary(session, sweep_id)
    return HTMLResponse(render_sweep_html(summary)) if format == "html" else summary
