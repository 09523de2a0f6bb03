"""What the client raises: one class per kind of refusal, read from the server's structured error
body (`detail`, a machine-readable `code`, and `param` when one field is at fault), all of them
`MlftError`s so a script can catch everything at once."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class MlftError(Exception):
    """`status` is the HTTP status of a refusal, None when no answer came back; `detail` is the
    server's own message (or what went wrong on the way), ready to show to a person; `code` the
    server's machine-readable reason ("not_found", "validation_error", ...) when it sends one;
    `param` the path of the field at fault ("hyperparameters.lr")."""

    def __init__(
        self,
        status: int | None,
        detail: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.detail if self.status is None else f"{self.detail} (HTTP {self.status})"


class ConnectionFailed(MlftError):
    """No answer: the server is unreachable, did not answer in time or dropped the connection."""


class BadRequest(MlftError):
    """400: the request is malformed in a way no single field explains."""


class Unauthorized(MlftError):
    """401: no token, an unknown one, or one that was revoked."""


class PermissionDenied(MlftError):
    """403: the token is valid but may not do this (admin-only routes, another project's data)."""


class NotFound(MlftError):
    """404: no such job, dataset, sweep ... (or not in this token's project)."""


class Conflict(MlftError):
    """409: the resource is in the wrong state (cancel a finished job, download before the
    model exists) or the name is taken."""


class PayloadTooLarge(MlftError):
    """413: an upload above the server's limit."""


class ValidationFailed(MlftError):
    """422: the spec or upload is invalid; `param` names the field at fault when one is."""


class RateLimited(MlftError):
    """429: too many requests; `retry_after` says when to come back."""


class ServiceUnavailable(MlftError):
    """503: the service is busy, its database or task queue is away, or the foundation model is
    still being built; `retry_after` says when to come back."""


ERROR_BY_STATUS: dict[int, type[MlftError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_from_response(response: httpx.Response) -> MlftError:
    """The typed exception for a refusal. The server says why in `detail` (a sentence from the
    domain, or FastAPI's list of validation problems) and, from issue 28 on, `code` and `param`;
    an older server's body without them still gives the detail and a `param` read from the
    first validation problem's location."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    detail, param = body.get("detail"), body.get("param")
    if isinstance(detail, list):
        if param is None and detail:
            param = _location(detail[0])
        detail = "; ".join(_validation_problem(item) for item in detail)
    if not detail:
        detail = response.text.strip() or response.reason_phrase
    code = body.get("code")
    kind = ERROR_BY_STATUS.get(response.status_code, MlftError)
    return kind(
        response.status_code,
        str(detail),
        code=str(code) if code is not None else None,
        param=str(param) if param is not None else None,
        retry_after=retry_after_seconds(response),
    )


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date (RFC 9110)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _location(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    location = [str(part) for part in item.get("loc", [])]
    # FastAPI locates body fields as ("body", field, ...); the first step says nothing new.
    if location[:1] in (["body"], ["query"], ["path"]):
        location = location[1:]
    return ".".join(location) or None


def _validation_problem(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = _location(item)
    message = str(item.get("msg", "invalid"))
    return f"{location}: {message}" if location else message
