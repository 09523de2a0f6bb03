from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse

from api.deps import ContextDep, RegistryDep, SessionDep
from api.schemas import JobPublic, JobsPublic
from core.errors import ArtifactMissingError
from core.jobs import cancel_job, get_job, list_jobs
from core.models import JobState
from core.spec import JobSpec
from core.submission import submit_job

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobPublic)
def create_job(
    spec: JobSpec, session: SessionDep, registry: RegistryDep, request: Request
) -> JobPublic:
    """Queue a fine-tuning job; it runs on the next free worker."""
    job = submit_job(session, spec, registry)
    request.app.state.enqueue(job.id)
    return JobPublic.of(job)


@router.get("", response_model=JobsPublic)
def read_jobs(session: SessionDep, limit: int = 100, offset: int = 0) -> JobsPublic:
    jobs = list_jobs(session, limit=limit, offset=offset)
    return JobsPublic(data=[JobPublic.of(job) for job in jobs], count=len(jobs))


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job_id: str, session: SessionDep) -> JobPublic:
    return JobPublic.of(get_job(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel(job_id: str, session: SessionDep) -> JobPublic:
    """Cancel a queued or running job; a running training process is stopped."""
    return JobPublic.of(cancel_job(session, job_id))


@router.get("/{job_id}/model", response_class=FileResponse)
def download_model(
    job_id: str,
    session: SessionDep,
    context: ContextDep,
    variant: Literal["target", "multihead"] = "target",
) -> FileResponse:
    """The fine-tuned model for `mace.calculators.MACECalculator(model_paths=...)`: a single
    head with LoRA merged; `variant=multihead` gives a replay job's model with both heads."""
    job = get_job(session, job_id)
    if job.state is not JobState.SUCCEEDED or job.model_key is None:
        raise ArtifactMissingError(f"job {job_id} is {job.state.value}; it has no model yet")
    key = job.model_key if variant == "target" else job.multihead_model_key
    if key is None:
        raise ArtifactMissingError(
            f"job {job_id} ({job.spec['strategy']['name']}) has no multihead model; only "
            "replay strategies train one"
        )
    suffix = "" if variant == "target" else "-multihead"
    return FileResponse(
        context.storage.local_path(key),
        media_type="application/octet-stream",
        filename=f"mlft-{job_id}{suffix}.model",
    )


@router.get("/{job_id}/metrics")
def read_metrics(job_id: str, session: SessionDep) -> dict[str, Any]:
    """Test-set errors of the fine-tuned model (meV/atom, meV/Å) and the E0s it carries."""
    job = get_job(session, job_id)
    if job.state is not JobState.SUCCEEDED or job.metrics is None:
        raise ArtifactMissingError(f"job {job_id} is {job.state.value}; it has no metrics yet")
    return {"job_id": job.id, **job.metrics, "e0s": job.e0s}
