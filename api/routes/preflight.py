from typing import Annotated, Any

from fastapi import APIRouter, Body

from api.deps import ContextDep, SessionDep
from core.reporting.report_models import PreflightResult
from core.science.spec import JobSpec
from core.workflows.runner import preflight_check

router = APIRouter(prefix="/preflight", tags=["preflight"])
PREFLIGHT_EXAMPLES: dict[str, dict[str, Any]] = {
    "defaults": {
        "summary": "Check a naive fine-tune with estimated E0s before submitting it",
        "value": {"train_dataset": "<train id>"},
    },
    "foundation_e0s": {
        "summary": "Would keeping the foundation's E0s work for these data?",
        "value": {"train_dataset": "<train id>", "e0s": "foundation"},
    },
    "grouped_split": {
        "summary": "LoRA, validation by whole config_type groups",
        "value": {
            "train_dataset": "<train id>",
            "strategy": {"name": "lora"},
            "split": {"group_by": "config_type"},
        },
    },
}


@router.post("", response_model=PreflightResult)
def run_preflight(
    spec: Annotated[JobSpec, Body(openapi_examples=PREFLIGHT_EXAMPLES)],
    session: SessionDep,
    context: ContextDep,
) -> dict[str, Any]:
    """The first stage of every job, now and without a job (seconds on a CPU): the foundation's
    energy and force errors on the training data, the E0 residual per element, findings
    (reference mismatch, label units, duplicates, unknown elements) with severity info, warning
    or blocking, a suggested strategy and E0 method, and the cost estimate. A job with a
    `blocking` finding fails at preflight unless its spec lists the code in
    `preflight.acknowledge`."""
    return preflight_check(session, context, spec)
