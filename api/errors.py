"""Domain errors → HTTP, in one place."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from core.errors import (
    ArtifactMissingError,
    FoundationModelUnavailableError,
    InvalidDatasetError,
    InvalidSpecError,
    InvalidStateTransitionError,
    MlftError,
    NotFoundError,
)

STATUS_BY_ERROR: list[tuple[type[MlftError], int]] = [
    (InvalidDatasetError, 422),
    (InvalidSpecError, 422),
    (NotFoundError, 404),
    (ArtifactMissingError, 409),
    (InvalidStateTransitionError, 409),
    (FoundationModelUnavailableError, 503),
]


class PayloadTooLargeError(MlftError):
    """An upload exceeded the configured size limit."""


def status_for(error: MlftError) -> int:
    if isinstance(error, PayloadTooLargeError):
        return 413
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlftError)
    async def _domain_error(_request: Request, error: MlftError) -> JSONResponse:
        return JSONResponse(status_code=status_for(error), content={"detail": str(error)})
