"""Domain errors → HTTP, in one place."""

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import (
    ArtifactMissingError,
    AuthenticationError,
    BrokerUnavailableError,
    ConflictError,
    DatabaseBusyError,
    FoundationModelBuildingError,
    FoundationModelUnavailableError,
    InvalidDatasetError,
    InvalidModelFileError,
    InvalidQueryError,
    InvalidSpecError,
    InvalidStateTransitionError,
    MlftError,
    NotFoundError,
    PermissionDeniedError,
    ServiceBusyError,
    StorageUnavailableError,
    UploadTooLargeError,
)

# Each domain error's HTTP status and machine-readable `code`, most specific first: a client
# branches on the code (stable), never on the English of `detail`.
ERROR_TABLE: list[tuple[type[MlftError], int, str]] = [
    (UploadTooLargeError, 413, "upload_too_large"),
    (InvalidDatasetError, 422, "invalid_dataset"),
    (InvalidSpecError, 422, "invalid_spec"),
    (InvalidModelFileError, 422, "invalid_model_file"),
    (InvalidQueryError, 422, "invalid_query"),
    (NotFoundError, 404, "not_found"),
    (AuthenticationError, 401, "authentication_failed"),
    (PermissionDeniedError, 403, "permission_denied"),
    (ConflictError, 409, "conflict"),
    (ArtifactMissingError, 409, "artifact_missing"),
    (InvalidStateTransitionError, 409, "invalid_state"),
    (FoundationModelBuildingError, 503, "foundation_building"),
    (FoundationModelUnavailableError, 503, "foundation_unavailable"),
    (BrokerUnavailableError, 503, "broker_unavailable"),
    (DatabaseBusyError, 503, "database_busy"),
    (StorageUnavailableError, 503, "storage_unavailable"),
    (ServiceBusyError, 503, "service_busy"),
]
STATUS_BY_ERROR: list[tuple[type[MlftError], int]] = [
    (error_type, status) for error_type, status, _code in ERROR_TABLE
]
# The codes of errors that are not domain errors: request validation, routes and methods that do
# not exist (Starlette's own 404/405), and anything else by status.
VALIDATION_ERROR = "validation_error"
CODE_BY_STATUS = {
    400: "bad_request",
    401: "authentication_failed",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "upload_too_large",
    422: VALIDATION_ERROR,
    429: "rate_limited",
    503: "service_unavailable",
}
# A database that is away or saturated is a reason to come back later, not a server bug.
DATABASE_RETRY_AFTER_SECONDS = 5
# Every 503 (and 429) says when to come back; a foundation that cannot be fetched now (offline,
# its address unreachable) is worth a try a minute later.
DEFAULT_RETRY_AFTER_SECONDS = 60
FOUNDATION_BUILDING_RETRY_AFTER_SECONDS = 30


def status_for(error: MlftError) -> int:
    return _entry_for(error)[0]


def code_for(error: MlftError) -> str:
    return _entry_for(error)[1]


def _entry_for(error: MlftError) -> tuple[int, str]:
    for error_type, status, code in ERROR_TABLE:
        if isinstance(error, error_type):
            return status, code
    return 500, "internal_error"


def retry_after_for(error: MlftError) -> int:
    if isinstance(error, ServiceBusyError):
        return error.retry_after
    if isinstance(error, FoundationModelBuildingError):
        return FOUNDATION_BUILDING_RETRY_AFTER_SECONDS
    return DEFAULT_RETRY_AFTER_SECONDS


def error_body(detail: Any, code: str, param: str | None = None) -> dict[str, Any]:
    """The body of every 4xx and 5xx: `detail` (as before), `code`, and `param` when one field
    of the request is at fault."""
    body = {"detail": detail, "code": code}
    if param is not None:
        body["param"] = param
    return body


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
            body = error_body("the path contains a NUL byte", "not_found")
            response = JSONResponse(body, status_code=404)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_MISSING = object()


def _child(current: Any, part: Any) -> Any:
    if isinstance(current, dict) and part in current:
        return current[part]
    if isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
        return current[part]
    return _MISSING


def validation_param(location: tuple[Any, ...] | list[Any], given: Any) -> str | None:
    """The JSON path (`strategy.rank`, `limit`) of a validation error's location: pydantic's
    `loc` also holds the tags of discriminated unions and validator names, which are no keys of
    the request; those are left out by walking the input itself."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    path: list[str] = []
    current = given
    for index, part in enumerate(parts):
        child = _child(current, part)
        walkable = isinstance(current, dict | list)
        if child is _MISSING and walkable and index < len(parts) - 1:
            continue  # a union's tag or a validator's name, not a key of the request
        # Found, a missing field (the last part), or a query parameter (no body to walk).
        current = None if child is _MISSING else child
        path.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(path).replace(".[", "[") or None


def _validation_body(error: RequestValidationError) -> dict[str, Any]:
    problems = []
    params = []
    for problem in error.errors():
        param = validation_param(problem.get("loc", ()), getattr(error, "body", None))
        params.append(param)
        problems.append({**problem, "param": param} if param is not None else problem)
    # One field at fault (however many things are wrong with it): it is named at the top.
    distinct = set(params)
    single = params[0] if len(distinct) == 1 else None
    return error_body(json_safe(problems), VALIDATION_ERROR, single)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(RejectNulInPath)

    @app.exception_handler(MlftError)
    async def _domain_error(_request: Request, error: MlftError) -> JSONResponse:
        status = status_for(error)
        headers = {"Retry-After": str(retry_after_for(error))} if status in (429, 503) else None
        return JSONResponse(
            status_code=status,
            content=error_body(str(error), code_for(error), error.param),
            headers=headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        # FastAPI's own answers (no such route, method not allowed) get a code like the rest.
        headers = dict(error.headers or {})
        if error.status_code in (429, 503):
            headers.setdefault("Retry-After", str(DEFAULT_RETRY_AFTER_SECONDS))
        if error.status_code < 400 or error.status_code in (204, 304):
            return await http_exception_handler(request, error)
        code = CODE_BY_STATUS.get(error.status_code, f"http_{error.status_code}")
        return JSONResponse(
            status_code=error.status_code,
            content=error_body(error.detail, code),
            headers=headers or None,
        )

    @app.exception_handler(sa_exc.TimeoutError)
    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
        # Pool exhausted beyond the request gate (a route with a second session), or the
        # database server briefly unreachable.
        return JSONResponse(
            status_code=503,
            content=error_body(
                f"the database is busy or unreachable; retry shortly ({type(error).__name__})",
                "database_busy",
            ),
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=_validation_body(error))
