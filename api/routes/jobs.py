from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import FileResponse, Response

from api.deps import (
    ContextDep,
    DispatchDep,
    LimitParam,
    OffsetParam,
    RegistryDep,
    SessionDep,
    SettingsDep,
)
from api.list_params import JobFilters
from api.responses import also_as, file_response, in_format, stored_file
from api.schemas import JobPublic, JobsPublic
from core.artifacts.storage_keys import (
    EXPORT_FILES,
    RSS_FLAGGED_FILE,
    job_artifact_key,
    mace_log_key,
)
from core.errors import ArtifactMissingError
from core.reporting.job_report import job_report
from core.reporting.model_card import render_markdown
from core.reporting.report_models import JobMetrics, JobReport, ModelCard
from core.reporting.reports import render_html
from core.science.spec import JobSpec
from core.service.jobs import JOB_PARTS, TERMINAL_STATES, JobPart, cancel_job, get_job, list_jobs
from core.service.models import Job, JobState
from core.workflows.submission import reference_screen, submit_job

router = APIRouter(prefix="/jobs", tags=["jobs"])
# Shown in /docs; dataset ids are placeholders for ids returned by POST /datasets.
JOB_SPEC_EXAMPLES: dict[str, dict[str, Any]] = {
    "defaults": {
        "summary": "Naive fine-tuning with estimated E0s (the defaults)",
        "value": {"train_dataset": "<train id>", "test_dataset": "<test id>"},
    },
    "isolated_atoms": {
        "summary": "E0s from isolated atoms at the training data's level of theory",
        "value": {
            "train_dataset": "<train id>",
            "test_dataset": "<test id>",
            "e0s": "isolated_atoms",
            "isolated_atoms_dataset": "<isolated atoms id>",
            "hyperparameters": {"max_num_epochs": 10},
        },
    },
    "freeze": {
        "summary": "Freeze embedding and interactions; products and readouts train",
        "value": {"train_dataset": "<train id>", "strategy": {"name": "freeze_interactions"}},
    },
    "lora": {
        "summary": "LoRA adapters (rank 4), merged into the delivered model",
        "value": {
            "train_dataset": "<train id>",
            "strategy": {"name": "lora", "rank": 4, "alpha": 1.0},
        },
    },
    "pseudolabel_replay": {
        "summary": "Replay 200 foundation-labelled structures picked by farthest-point sampling",
        "value": {
            "train_dataset": "<train id>",
            "strategy": {
                "name": "pseudolabel_replay",
                "replay": {"dataset": "<replay id>", "num_samples": 200, "selection": "fps"},
            },
        },
    },
    "scratch": {
        "summary": "The baseline: a new MACE trained on the data alone",
        "value": {
            "train_dataset": "<train id>",
            "strategy": {"name": "scratch", "architecture": {"r_max": 5.0}},
            "e0s": {"H": -13.57, "C": -1026.85},
        },
    },
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobPublic)
def create_job(
    spec: Annotated[JobSpec, Body(openapi_examples=JOB_SPEC_EXAMPLES)],
    session: SessionDep,
    registry: RegistryDep,
    context: ContextDep,
    settings: SettingsDep,
    dispatch_work: DispatchDep,
) -> JobPublic:
    """Queue a fine-tuning job; it runs on the next free worker. What would fail later and can
    be known now is refused with 422 (or 503 for a foundation that cannot be fetched). 503 with
    Retry-After when the task queue is unreachable: the job stays queued and is sent once the
    broker is back."""
    job = submit_job(session, spec, registry, screen=reference_screen(context, settings))
    dispatch_work(session, "job", job.id)
    return JobPublic.of(job)


# A status read leaves out what grows with the run and the data; `?include=epochs` adds the
# learning curve, `?include=split` the configurations' positions in train/valid/test.
IncludeParam = Annotated[
    tuple[JobPart, ...], Query(description="deferred parts to add: epochs, split")
]


@router.get("", response_model=JobsPublic)
def read_jobs(
    session: SessionDep,
    filters: JobFilters,
    limit: LimitParam = 100,
    offset: OffsetParam = 0,
    include: IncludeParam = (),
) -> JobsPublic:
    """The project's jobs matching the filters, newest first; `total` counts them all and
    `has_more` says whether a next page (offset + count) exists."""
    page = list_jobs(session, filters, limit=limit, offset=offset, include=include)
    data = [JobPublic.of(job, include) for job in page.data]
    return JobsPublic(data=data, **JobsPublic.paging(page))


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job_id: str, session: SessionDep, include: IncludeParam = ()) -> JobPublic:
    return JobPublic.of(get_job(session, job_id, include=include), include)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel(job_id: str, session: SessionDep) -> JobPublic:
    """Cancel a queued or running job; a running training process is stopped."""
    return JobPublic.of(cancel_job(session, job_id))


@router.get(
    "/{job_id}/model",
    response_class=FileResponse,
    responses=file_response("application/octet-stream", "The model file"),
)
def download_model(
    job_id: str,
    session: SessionDep,
    context: ContextDep,
    variant: Literal["target", "multihead", "torchscript", "lammps"] = "target",
) -> FileResponse:
    """The fine-tuned model for `mace.calculators.MACECalculator(model_paths=...)`: a single
    head with LoRA merged; `variant=multihead` gives a replay job's model with both heads,
    `torchscript` the compiled model (`torch.jit.load`), `lammps` mace's LAMMPS model for
    `pair_style mace`. Every export was reloaded and matched the trained model's predictions
    before delivery (the job's `exports` says by how much). Available as soon as the model
    passed its checks (`model_available`), while the evaluation may still run."""
    job = get_job(session, job_id)
    if job.model_key is None:
        raise ArtifactMissingError(
            f"job {job_id} is {job.state.value}; it has no model yet (it is delivered once "
            "trained and checked)"
        )
    key, filename, missing = _model_file(job, variant)
    return stored_file(
        context.storage,
        key,
        missing=missing,
        media_type="application/octet-stream",
        filename=filename,
    )


def _model_file(job: Job, variant: str) -> tuple[str | None, str, str]:
    """The key of a model variant, the name it downloads as, and why it may be missing."""
    if variant in EXPORT_FILES:
        export = (job.exports or {}).get(variant) or {}
        reason = export.get("error") or "the job ran before exports existed"
        return (
            export.get("key"),
            f"mlft-{job.id}-{EXPORT_FILES[variant]}",
            f"job {job.id} has no {variant} export: {reason}",
        )
    if variant == "multihead":
        return (
            job.multihead_model_key,
            f"mlft-{job.id}-multihead.model",
            f"job {job.id} ({job.spec['strategy']['name']}) has no multihead model; only "
            "replay strategies train one",
        )
    return job.model_key, f"mlft-{job.id}.model", f"job {job.id} has no stored model"


@router.get(
    "/{job_id}/model-card",
    response_model=ModelCard,
    response_model_exclude_unset=True,
    responses=also_as("text/markdown", "The model card (JSON), or with format=md as Markdown"),
)
def read_model_card(
    job_id: str, session: SessionDep, format: Literal["json", "md"] = "json"
) -> dict[str, Any] | Response:
    """Where the delivered model came from and what it was measured to do: foundation and its
    sha256, datasets (sha256, sizes), level of theory, strategy and effective hyperparameters,
    E0s, metrics (accuracy, forgetting, MD stability), tested exports, software versions."""
    job = get_job(session, job_id)
    if job.model_card is None:
        raise ArtifactMissingError(f"job {job_id} is {job.state.value}; it has no model card")
    return in_format(job.model_card, format, md=render_markdown)


@router.get(
    "/{job_id}/rss-holes.extxyz",
    response_class=FileResponse,
    responses=file_response("chemical/x-extxyz", "The flagged structures, as extxyz"),
)
def download_rss_holes(job_id: str, session: SessionDep, context: ContextDep) -> FileResponse:
    """The relaxed structures the evaluation's random structure search flagged as holes (the
    fine-tuned model's and its foundation's), as extxyz with the criteria in each frame's info."""
    job = get_job(session, job_id)
    return stored_file(
        context.storage,
        job_artifact_key(job.id, RSS_FLAGGED_FILE) if job.state is JobState.SUCCEEDED else None,
        missing=f"job {job_id} is {job.state.value} and has no random structure search results "
        "(evaluation.rss_holes in the spec runs it)",
        media_type="chemical/x-extxyz",
        filename=f"mlft-{job_id}-{RSS_FLAGGED_FILE}",
    )


@router.get(
    "/{job_id}/log",
    response_class=FileResponse,
    responses=file_response("text/plain", "mace-torch's whole training log"),
)
def download_log(job_id: str, session: SessionDep, context: ContextDep) -> FileResponse:
    """mace-torch's whole output for a job that ended, from artifact storage; while it runs, its
    last lines stream from `GET /jobs/{id}/events?log=true`."""
    job = get_job(session, job_id)
    return stored_file(
        context.storage,
        mace_log_key(job.id) if job.state in TERMINAL_STATES else None,
        missing=f"job {job_id} is {job.state.value} and has no stored log (stored when a job "
        "whose training started ends)",
        media_type="text/plain",
        filename=f"mlft-{job_id}-training.log",
    )


# A section the evaluation did not measure stays out of the JSON rather than appear as null.
@router.get("/{job_id}/metrics", response_model=JobMetrics, response_model_exclude_unset=True)
def read_metrics(job_id: str, session: SessionDep) -> dict[str, Any]:
    """What the evaluation stage measured (test-set errors in meV/atom and meV/Å, forgetting,
    MD stability, RDFs, dimer curves) and the E0s the model carries."""
    job = get_job(session, job_id)
    if job.state is not JobState.SUCCEEDED or job.metrics is None:
        raise ArtifactMissingError(f"job {job_id} is {job.state.value}; it has no metrics yet")
    return {"job_id": job.id, **job.metrics, "e0s": job.e0s}


@router.get(
    "/{job_id}/report",
    response_model=JobReport,
    response_model_exclude_unset=True,
    responses=also_as("text/html", "The report (JSON), or with format=html one HTML page"),
)
def read_report(
    job_id: str, session: SessionDep, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | Response:
    """Everything measured about the job: E0s, learning curves, accuracy, forgetting, MD
    stability, RDFs, dimer curves; `format=html` gives a self-contained page with plots."""
    report = job_report(get_job(session, job_id, include=JOB_PARTS))
    return in_format(report, format, html=render_html)
