"""Domain errors → HTTP, in one place."""

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import (
    ArtifactMissingError,
    AuthenticationError,
    ConflictError,
    FoundationModelUnavailableError,
    InvalidDatasetError,
    InvalidModelFileError,
    InvalidSpecError,
    InvalidStateTransitionError,
    MlftError,
    NotFoundError,
    PermissionDeniedError,
    ServiceBusyError,
    UploadTooLargeError,
)

STATUS_BY_ERROR: list[tuple[type[MlftError], int]] = [
    (UploadTooLargeError, 413),
    (InvalidDatasetError, 422),
    (InvalidSpecError, 422),
    (InvalidModelFileError, 422),
    (NotFoundError, 404),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (ConflictError, 409),
    (ArtifactMissingError, 409),
    (InvalidStateTransitionError, 409),
    (FoundationModelUnavailableError, 503),
    (ServiceBusyError, 503),
]
# A database that is away or saturated is a reason to come back later, not a server bug.
DATABASE_RETRY_AFTER_SECONDS = 5


def status_for(error: MlftError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


# What a 422 echoes of a rejected input; the whole of a large body would be noise.
ECHO_MAX_CHARS = 1000


def json_safe(value: Any) -> Any:
    """`value` as something JSON can always encode: a validation error echoes the input, and
    the input may hold NaN or Infinity (Python's JSON reads them), bytes or exceptions."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value if len(value) <= ECHO_MAX_CHARS else value[:ECHO_MAX_CHARS] + "…"
    if isinstance(value, dict):
        return {str(json_safe(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(item) for item in value]
    return json_safe(str(value))


class RejectNulInPath:
    """A NUL byte in a path (`GET /jobs/%00`) names nothing: 404 here, before any route sends
    it to PostgreSQL, whose text type refuses NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "\x00" in scope.get("path", ""):
            response = JSONResponse({"detail": "the path contains a NUL byte"}, status_code=404)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(RejectNulInPath)

    @app.exception_handler(MlftError)
    async def _domain_error(_request: Request, error: MlftError) -> JSONResponse:
        headers = None
        if isinstance(error, ServiceBusyError):
            headers = {"Retry-After": str(error.retry_after)}
        return JSONResponse(
            status_code=status_for(error), content={"detail": str(error)}, headers=headers
        )

    @app.exception_handler(sa_exc.TimeoutError)
    @app.exception_handler(sa_exc.OperationalError)
    async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
        # Pool exhausted beyond the request gate (a route with a second session), or the
        # database server briefly unreachable.
        return JSONResponse(
            status_code=503,
            content={
                "detail": f"the database is busy or unreachable; retry shortly "
                f"({type(error).__name__})"
            },
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": json_safe(error.errors())})
