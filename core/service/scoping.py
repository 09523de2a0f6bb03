"""Project isolation in one place: a session scoped to a project sees and creates only its rows.

Every query an API request makes goes through a scoped session, so no domain function has to
remember to filter, and a forgotten filter cannot leak another project's dataset, job or report.
Workers use unscoped sessions: a job they run was admitted through a scoped one.
"""

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from core.service.models import ProjectOwned

PROJECT_KEY = "project_id"


def scope_session(session: Session, project_id: str | None) -> Session:
    """Limit the session to one project's rows; None leaves it unscoped."""
    session.info[PROJECT_KEY] = project_id
    return session


def session_project(session: Session) -> str | None:
    return session.info.get(PROJECT_KEY)


@event.listens_for(Session, "do_orm_execute")
def _only_the_projects_rows(state: ORMExecuteState) -> None:
    project_id = session_project(state.session)
    if project_id is None or not state.is_select or state.is_column_load:
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            ProjectOwned, lambda cls: cls.project_id == project_id, include_aliases=True
        )
    )


@event.listens_for(Session, "before_flush")
def _new_rows_join_the_project(session: Session, _context, _instances) -> None:
    project_id = session_project(session)
    if project_id is None:
        return
    for row in session.new:
        if isinstance(row, ProjectOwned):
            row.project_id = project_id
