"""Projects and their API tokens: who may see which datasets, jobs, models and reports.

Tokens are random and long, so a plain sha256 is enough at rest (no salt or slow hash: nobody
guesses 256 random bits, and a leaked table must not let anyone call the API). The admin token is a
setting, not a row: it manages projects and foundation models and reads no project's data.
"""

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import AuthenticationError, ConflictError, NotFoundError, PermissionDeniedError
from core.service.models import DEFAULT_PROJECT_ID, ApiToken, Project, utcnow

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "mlft_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a project's token, or the admin (project None)."""

    project_id: str | None
    admin: bool

    def require_project(self) -> str:
        if self.project_id is None:
            raise PermissionDeniedError(
                "the admin token manages projects and foundation models; "
                "use a project token for datasets, jobs and reports"
            )
        return self.project_id

    def require_admin(self) -> None:
        if not self.admin:
            raise PermissionDeniedError("only the admin token may do this")


# With no admin token configured (the embedded default) the service has one user: it acts as
# the admin and as the default project at once.
OPEN_ACCESS = Principal(project_id=DEFAULT_PROJECT_ID, admin=True)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """Project tokens this process found valid within the last `ttl` seconds, so that most
    requests need no token lookup (issue 17: every read did one). Revoking a token through this
    process forgets it at once; other API processes stop accepting it within `ttl`.
    Only used from the event loop, so it needs no lock."""

    def __init__(
        self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}

    def lookup(self, token: str | None, admin_token: str) -> Principal | None:
        """The caller, when known without the database: the admin, or a recently seen token."""
        if not token:
            return None
        if hmac.compare_digest(token.encode(), admin_token.encode()):
            return Principal(project_id=None, admin=True)
        key = hash_token(token)
        principal, expires = self._entries.get(key, (None, 0.0))
        if principal is not None and expires <= self.clock():
            del self._entries[key]
            return None
        return principal

    def remember(self, token: str | None, principal: Principal) -> None:
        if token is None or self.ttl <= 0 or principal.admin:
            return
        if len(self._entries) >= self.max_entries:
            # Many distinct tokens at once: start over rather than track ages.
            self._entries.clear()
        self._entries[hash_token(token)] = (principal, self.clock() + self.ttl)

    def forget(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)


def authenticate(session: Session, token: str | None, admin_token: str) -> Principal:
    if not token:
        raise AuthenticationError("missing API token: send 'Authorization: Bearer <token>'")
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(project_id=None, admin=True)
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        raise AuthenticationError("invalid or revoked API token")
    return Principal(project_id=row.project_id, admin=False)


def create_project(session: Session, name: str) -> Project:
    project = Project(name=name)
    session.add(project)
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise ConflictError(f"a project named {name!r} exists already") from error
    logger.info("project=%s created name=%s", project.id, name)
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.created_at)))


def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"project {project_id} does not exist")
    return project


def issue_token(session: Session, project_id: str, name: str) -> tuple[ApiToken, str]:
    """A new token for the project; the plain token is returned once and never stored."""
    get_project(session, project_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(project_id=project_id, name=name, token_hash=hash_token(token))
    session.add(row)
    session.commit()
    logger.info("token=%s issued project=%s", row.id, project_id)
    return row, token


def revoke_token(session: Session, project_id: str, token_id: str) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None or row.project_id != project_id:
        raise NotFoundError(f"token {token_id} does not exist in project {project_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
        logger.info("token=%s revoked project=%s", token_id, project_id)
    return row
