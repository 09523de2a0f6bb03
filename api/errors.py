"""Domain errors → HTTP, in one place."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from core.errors import (
    ArtifactMissingError,
    AuthenticationError,
    ConflictError,
    FoundationModelUnavailableError,
    InvalidDatasetError,
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


def install_error_handlers(app: FastAPI) -> None:
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
            content={"detail": f"the database is busy or unreachable; retry shortly "
                     f"({type(error).__name__})"},
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
