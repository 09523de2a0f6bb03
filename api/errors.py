"""Domain errors → HTTP, in one place."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
]


def status_for(error: MlftError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlftError)
    async def _domain_error(_request: Request, error: MlftError) -> JSONResponse:
        return JSONResponse(status_code=status_for(error), content={"detail": str(error)})
