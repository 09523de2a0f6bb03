"""POST /jobs/{id}/promote: a succeeded job's model becomes a foundation (issue 28)."""

from dataclasses import asdict

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.deps import ContextDep, PrincipalDep, RegistryDep, SessionDep
from api.schemas import FoundationPublic
from core.registry.catalogue import FOUNDATION_NAME_MAX_LENGTH
from core.workflows.promotion import promote_job

router = APIRouter(prefix="/jobs", tags=["jobs"])


class PromotionCreate(BaseModel):
    # Checked against the registry's name rules in core (422 with param "name"), so a bad name
    # reads the same here as at registration.
    name: str = Field(max_length=4 * FOUNDATION_NAME_MAX_LENGTH, examples=["cu-round-1"])
    description: str | None = Field(default=None, max_length=2000)


@router.post(
    "/{job_id}/promote",
    response_model=FoundationPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No such job in the caller's project"},
        409: {"description": "The job has not succeeded, or the name is taken"},
        422: {"description": "Not a registry name (or outside the project's namespace)"},
    },
)
def promote(
    job_id: str,
    body: PromotionCreate,
    session: SessionDep,
    principal: PrincipalDep,
    registry: RegistryDep,
    context: ContextDep,
) -> FoundationPublic:
    """Register the job's delivered model as a foundation named `name`, pinned by the sha256 of
    its safe form and converted in the registry's sandbox like any upload, with its lineage
    (parent foundation, job, dataset sha256s, E0 method, strategy). A job can then start from
    it with `"foundation_model": name`. The admin may use any name; a project token promotes
    its own jobs into names starting with `<project id>.`. docs/model-registration.md."""
    model = promote_job(
        session, context.storage, registry, job_id, body.name, principal, body.description
    )
    info = registry.info(model.name)
    assert info is not None  # just registered
    return FoundationPublic(name=model.name, source="local", available=True, **asdict(info))
