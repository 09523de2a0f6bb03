from typing import Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import FileResponse, Response

from api.deps import ContextDep, DispatchDep, LimitParam, OffsetParam, SessionDep
from api.list_params import EvaluationFilters
from api.responses import also_as, file_response, in_format, stored_file
from api.schemas import EvaluationPublic, EvaluationsPublic
from core.artifacts.storage_keys import RSS_FLAGGED_FILE, evaluation_artifact_key
from core.reporting.job_report import evaluation_report
from core.reporting.report_models import EvaluationReport
from core.reporting.reports import render_html
from core.science.spec import EvaluationSpec
from core.service.jobs import cancel
from core.workflows.evaluations import get_evaluation, list_evaluations, submit_evaluation

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


# Sections an evaluation did not measure stay out of its JSON rather than appear as null.
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EvaluationPublic,
    response_model_exclude_unset=True,
)
def create_evaluation(
    spec: EvaluationSpec, session: SessionDep, context: ContextDep, dispatch_work: DispatchDep
) -> EvaluationPublic:
    """Evaluate a job's model, or an unmodified foundation model to compare against, on a dataset:
    accuracy, forgetting, MD stability, RDFs and short-range repulsion; `kind: "rss_holes"` runs
    the random-structure-search hole test alone (compositions named, or drawn from the dataset or
    the job's training data)."""
    evaluation = submit_evaluation(session, spec, context)
    dispatch_work(session, "evaluation", evaluation.id)
    return EvaluationPublic.model_validate(evaluation)


@router.get("", response_model=EvaluationsPublic, response_model_exclude_unset=True)
def read_evaluations(
    session: SessionDep,
    filters: EvaluationFilters,
    limit: LimitParam = 100,
    offset: OffsetParam = 0,
) -> EvaluationsPublic:
    """The project's evaluations matching the filters, newest first, with `total` and
    `has_more`."""
    page = list_evaluations(session, filters, limit=limit, offset=offset)
    data = [EvaluationPublic.model_validate(evaluation) for evaluation in page.data]
    return EvaluationsPublic(data=data, **EvaluationsPublic.paging(page))


@router.get("/{evaluation_id}", response_model=EvaluationPublic, response_model_exclude_unset=True)
def read_evaluation(evaluation_id: str, session: SessionDep) -> EvaluationPublic:
    return EvaluationPublic.model_validate(get_evaluation(session, evaluation_id))


@router.post(
    "/{evaluation_id}/cancel", response_model=EvaluationPublic, response_model_exclude_unset=True
)
def cancel_evaluation(evaluation_id: str, session: SessionDep) -> EvaluationPublic:
    """Cancel a queued or running evaluation; a running one stops at its next stage."""
    return EvaluationPublic.model_validate(cancel(session, get_evaluation(session, evaluation_id)))


@router.get(
    "/{evaluation_id}/report",
    response_model=EvaluationReport,
    response_model_exclude_unset=True,
    responses=also_as("text/html", "The report (JSON), or with format=html one HTML page"),
)
def read_evaluation_report(
    evaluation_id: str, session: SessionDep, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | Response:
    report = evaluation_report(get_evaluation(session, evaluation_id))
    return in_format(report, format, html=render_html)


@router.get(
    "/{evaluation_id}/rss-holes.extxyz",
    response_class=FileResponse,
    responses=file_response("chemical/x-extxyz", "The flagged structures, as extxyz"),
)
def download_rss_holes(
    evaluation_id: str, session: SessionDep, context: ContextDep
) -> FileResponse:
    """The relaxed structures the random structure search flagged as holes, as extxyz; each
    frame's info names the model, composition, pressure and the criteria it met."""
    evaluation = get_evaluation(session, evaluation_id)
    return stored_file(
        context.storage,
        evaluation_artifact_key(evaluation.id, RSS_FLAGGED_FILE),
        missing=f"evaluation {evaluation_id} is {evaluation.state.value} and has no random "
        "structure search results",
        media_type="chemical/x-extxyz",
        filename=f"mlft-{evaluation_id}-{RSS_FLAGGED_FILE}",
    )
