"""The answers that are not one JSON model: a stored artifact sent as a file, and a JSON document
that can also be asked for as a page (`format=html`) or as Markdown (`format=md`); with the
OpenAPI declarations that say so."""

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from core.artifacts.storage import Storage
from core.errors import ArtifactMissingError

Document = TypeVar("Document")
BINARY = {"schema": {"type": "string", "format": "binary"}}


def file_response(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that sends a file, for `responses=`: its media type in OpenAPI."""
    return {200: {"description": description, "content": {media_type: BINARY}}}


def also_as(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a JSON route that can also answer in `media_type` (format=html, md)."""
    content = {media_type: {"schema": {"type": "string"}}}
    return {200: {"description": description, "content": content}}


def stored_file(
    storage: Storage, key: str | None, *, missing: str, media_type: str, filename: str
) -> FileResponse:
    """The artifact under `key` as a download; ArtifactMissingError with `missing` (what the
    user can do about it) when there is no key or nothing is stored under it."""
    if key is None:
        raise ArtifactMissingError(missing)
    try:
        return FileResponse(storage.local_path(key), media_type=media_type, filename=filename)
    except ArtifactMissingError as absent:
        raise ArtifactMissingError(missing) from absent


def in_format(
    document: Document,
    format: str,
    *,
    html: Callable[[Document], str] | None = None,
    md: Callable[[Document], str] | None = None,
) -> Document | Response:
    """`document` as it is (FastAPI sends it as JSON through the route's response model), or
    rendered as the HTML page or Markdown text the route's `format` asked for."""
    if format == "html" and html is not None:
        return HTMLResponse(html(document))
    if format == "md" and md is not None:
        return PlainTextResponse(md(document), media_type="text/markdown")
    return document
