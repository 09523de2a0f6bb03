"""The one exception the client raises when the server refuses a request or cannot be reached."""

import httpx


class MlftError(Exception):
    """`status` is the HTTP status of a refusal, None when no answer came back; `detail` is the
    server's own message (or what went wrong on the way), ready to show to a person."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.detail if self.status is None else f"{self.detail} (HTTP {self.status})"


def error_from_response(response: httpx.Response) -> MlftError:
    """The server says why in `detail`: a sentence from the domain, or FastAPI's list of
    validation problems for a malformed request."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(_validation_problem(item) for item in detail)
    if not detail:
        detail = response.text.strip() or response.reason_phrase
    return MlftError(response.status_code, str(detail))


def _validation_problem(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    # FastAPI locates body fields as ("body", field, ...); the first step says nothing new.
    location = [str(part) for part in item.get("loc", [])]
    if location[:1] == ["body"]:
        location = location[1:]
    message = str(item.get("msg", "invalid"))
    return f"{'.'.join(location)}: {message}" if location else message
