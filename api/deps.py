"""Typed dependencies: every route signature says what it needs.

Those that do no blocking work are `async def`: FastAPI runs a plain `def` dependency in a worker
thread, and each such hop cost every request a thread switch under load (issue 17).
"""

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from core.config import Settings
from core.errors import DatabaseBusyError
from core.registry.foundations import FoundationRegistry
from core.service.auth import OPEN_ACCESS, Principal, TokenCache, authenticate
from core.service.dispatch import Send, dispatch
from core.service.scoping import scope_session
from core.workflows.context import JobContext


async def get_context(request: Request) -> JobContext:
    return request.app.state.context


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> FoundationRegistry:
    return request.app.state.context.registry


# auto_error off: without an admin token configured the service needs no token at all.
bearer = HTTPBearer(auto_error=False, description="A project token, or the admin token")


def _database_gate(request: Request) -> anyio.Semaphore:
    # Created on first use, inside the event loop that serves the app.
    state = request.app.state
    if getattr(state, "database_gate", None) is None:
        state.database_gate = anyio.Semaphore(state.settings.pool_limits.capacity)
    return state.database_gate


# Requests that only read run without a transaction (core.service.db.reading_sessions).
READING_METHODS = frozenset({"GET", "HEAD"})


async def _request_session(request: Request) -> AsyncIterator[Session]:
    """One session per request: the token lookup and the route's own queries share it.

    Requests wait here, holding neither a thread nor a connection, until one of the pool's
    connections is theirs; without this gate, requests that took a worker thread then waited in
    it for a connection held by requests that were themselves waiting for a thread, and the pool
    timed out with a 500 (issue 17). A request that waits longer than the pool timeout gets 503.
    The session takes its connection with its first query, in the route's thread: the gate
    leaves one free for it (a connection held outside the gate, by an event stream's poll, may
    make it wait the pool timeout, then 503 as well).
    """
    settings: Settings = request.app.state.settings
    limits = settings.pool_limits
    gate = _database_gate(request)
    with anyio.move_on_after(limits.timeout) as waited:
        await gate.acquire()
    if waited.cancelled_caught:
        raise DatabaseBusyError(
            "the service is busy: every database connection is in use; retry shortly",
            retry_after=max(1, round(limits.timeout / 2)),
        )
    state = request.app.state
    reads_only = request.method in READING_METHODS
    session = state.reading_sessions() if reads_only else state.context.sessions()
    try:
        yield session
    finally:
        try:
            if reads_only:
                # Nothing to roll back (each statement committed on its own): giving the
                # connection back sends nothing to the database, so it needs no thread, and a
                # status read makes one hop to a thread instead of two (issue 26).
                session.close()
            else:
                # Shielded: a client that hangs up now must not leave the connection checked out.
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(session.close)
        finally:
            gate.release()


# Closed, and its gate slot given back, once the route function has returned and its answer is
# serialized, not after the answer is sent: a streamed answer (events) does not hold a slot.
RequestSession = Annotated[Session, Depends(_request_session, scope="function")]


# Browsers' EventSource cannot send headers, so the event stream alone also takes the token as
# `?access_token=`; anywhere else a token in a URL would only end up in logs and histories.
QUERY_TOKEN_ROUTES = frozenset({"/jobs/{job_id}/events"})


async def get_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    """The token the request presents: its bearer header, or `?access_token=` on the stream."""
    if credentials is not None:
        return credentials.credentials
    route = request.scope.get("route")
    if getattr(route, "path", None) in QUERY_TOKEN_ROUTES:
        return request.query_params.get("access_token")
    return None


async def get_token_cache(request: Request) -> TokenCache:
    return request.app.state.token_cache


async def get_principal(
    request: Request,
    token: Annotated[str | None, Depends(get_token)],
    session: RequestSession,
) -> Principal:
    """The caller; a token seen valid within `token_cache_seconds` needs no lookup."""
    settings: Settings = request.app.state.settings
    if settings.admin_token is None:
        return OPEN_ACCESS
    admin_token = settings.admin_token.get_secret_value()
    cache: TokenCache = request.app.state.token_cache
    principal = cache.lookup(token, admin_token)
    if principal is None:
        principal = await run_in_threadpool(authenticate, session, token, admin_token)
        cache.remember(token, principal)
    return principal


async def get_project_id(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    return principal.require_project()


async def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_admin()
    return principal


def _same_secret(token: str, secret: SecretStr) -> bool:
    return hmac.compare_digest(token.encode(), secret.get_secret_value().encode())


async def require_metrics_reader(
    request: Request,
    token: Annotated[str | None, Depends(get_token)],
    session: RequestSession,
) -> None:
    """With tokens on, metrics (every project's job counts) need the admin or metrics token;
    with them off everyone is the admin (OPEN_ACCESS)."""
    metrics_token: SecretStr | None = request.app.state.settings.metrics_token
    if token and metrics_token is not None and _same_secret(token, metrics_token):
        return
    principal = await get_principal(request, token, session)
    principal.require_admin()


async def get_session(
    principal: Annotated[Principal, Depends(get_principal)],
    session: RequestSession,
) -> Session:
    # Scoped to the caller's project: its queries see only that project's rows
    # (core.service.scoping).
    return scope_session(session, principal.project_id)


@dataclass(frozen=True)
class Dispatcher:
    """Sends a committed work row's task; 503 with Retry-After when the broker is away."""

    send: Send
    retry_after: int

    def __call__(self, session: Session, kind: str, row_id: str) -> None:
        dispatch(session, kind, row_id, self.send, retry_after=self.retry_after)


async def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


ContextDep = Annotated[JobContext, Depends(get_context)]
DispatchDep = Annotated[Dispatcher, Depends(get_dispatcher)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
# The caller's project: every dataset, job, evaluation and report route reads and writes in it.
ProjectDep = Annotated[str, Depends(get_project_id)]
AdminDep = Annotated[Principal, Depends(require_admin)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str | None, Depends(get_token)]
TokenCacheDep = Annotated[TokenCache, Depends(get_token_cache)]
RegistryDep = Annotated[FoundationRegistry, Depends(get_registry)]
# Paging bounds: PostgreSQL refuses a negative LIMIT/OFFSET and one beyond bigint.
LimitParam = Annotated[int, Query(ge=1, le=1000)]
OffsetParam = Annotated[int, Query(ge=0, le=2**31 - 1)]
