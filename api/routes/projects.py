"""Projects and their tokens, managed with the admin token."""

from fastapi import APIRouter, status

from api.deps import AdminDep, SessionDep, TokenCacheDep
from api.schemas import ProjectCreate, ProjectPublic, TokenCreate, TokenIssued, TokenPublic
from core.service.auth import create_project, get_project, issue_token, list_projects, revoke_token

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post(
    "",
    response_model=ProjectPublic,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "A project of that name exists"}},
)
def create(body: ProjectCreate, session: SessionDep, _admin: AdminDep) -> ProjectPublic:
    return ProjectPublic.model_validate(create_project(session, body.name))


@router.get("", response_model=list[ProjectPublic])
def read_all(session: SessionDep, _admin: AdminDep) -> list[ProjectPublic]:
    return [ProjectPublic.model_validate(project) for project in list_projects(session)]


@router.post(
    "/{project_id}/tokens",
    response_model=TokenIssued,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No such project"}},
)
def create_token(
    project_id: str, body: TokenCreate, session: SessionDep, _admin: AdminDep
) -> TokenIssued:
    """A new project token. The token is in this response only; the service keeps its hash."""
    get_project(session, project_id)
    row, token = issue_token(session, project_id, body.name)
    return TokenIssued(id=row.id, name=row.name, project_id=project_id, token=token)


@router.delete("/{project_id}/tokens/{token_id}", response_model=TokenPublic)
def delete_token(
    project_id: str, token_id: str, session: SessionDep, _admin: AdminDep, cache: TokenCacheDep
) -> TokenPublic:
    row = revoke_token(session, project_id, token_id)
    cache.forget(row.token_hash)
    return TokenPublic.model_validate(row)
