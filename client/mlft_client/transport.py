"""The HTTP side of the client: requests with the token, typed errors, streams, and lists read
page by page to their end."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from mlft_client.errors import ConnectionFailed, MlftError, error_from_response

# The server's page limit is 1000; 100 keeps each answer small while a list reads to its end.
PAGE_SIZE = 100
Params = list[tuple[str, str | int | float | bool]]
F = TypeVar("F", bound=Callable[..., Any])


def route(method: str, path: str) -> Callable[[F], F]:
    """Marks a Client method as the one that calls `method path` (the path as the server's
    OpenAPI document writes it); tests/api/test_client_parity.py checks every route has one."""

    def mark(function: F) -> F:
        routes = getattr(function, "__mlft_routes__", ())
        function.__mlft_routes__ = (*routes, (method.upper(), path))  # type: ignore[attr-defined]
        return function

    return mark


def routes_of(cls: type) -> dict[tuple[str, str], str]:
    """(method, path) -> the name of the method of `cls` that calls it."""
    found: dict[tuple[str, str], str] = {}
    for name in dir(cls):
        for key in getattr(getattr(cls, name), "__mlft_routes__", ()):
            found[key] = name
    return found


class Listing(list[dict[str, Any]]):
    """The items of a list, all its pages read; `total` is how many the server holds for the
    filters (None from a server that does not say), which is more than `len` under a `limit`."""

    total: int | None = None


def filter_params(
    filters: Mapping[str, str | None], tags: Mapping[str, str | None] | None = None
) -> Params:
    """Query parameters for a list's filters; each tag is its own `tag=key=value`, or
    `tag=key` (None as the value) for "the tag is set, whatever its value"."""
    params: Params = [(key, value) for key, value in filters.items() if value is not None]
    for key, value in (tags or {}).items():
        if "=" in key:
            raise ValueError(f"tag key {key!r} must not contain '='")
        params.append(("tag", key if value is None else f"{key}={value}"))
    return params


class Transport:
    def __init__(self, url: str, token: str | None, http: httpx.Client | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self.http.request(
                method, self.url + path, headers={**self.headers, **(headers or {})}, **kwargs
            )
        except httpx.TransportError as error:
            raise self.transport_error(error) from error
        if response.is_error:
            raise error_from_response(response)
        return response

    def pages(self, path: str, params: Params, limit: int | None) -> Listing:
        """Every item of a list (or the first `limit`), following `has_more` page by page; a
        server that does not send `has_more` has more while a page comes back full."""
        listing = Listing()
        while limit is None or len(listing) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(listing))
            page = self.json(
                "GET", path, params=[*params, ("limit", size), ("offset", len(listing))]
            )
            items = page["data"] if isinstance(page, dict) else page
            listing.extend(items)
            if isinstance(page, dict) and page.get("total") is not None:
                listing.total = page["total"]
            more = page.get("has_more") if isinstance(page, dict) else None
            if not items or not (len(items) == size if more is None else more):
                break
        if listing.total is None and (limit is None or len(listing) < limit):
            listing.total = len(listing)
        return listing

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        read_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        if read_timeout is not None:
            kwargs["timeout"] = httpx.Timeout(60.0, connect=10.0, read=read_timeout)
        try:
            with self.http.stream(
                method, self.url + path, headers={**self.headers, **(headers or {})}, **kwargs
            ) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as error:
            raise self.transport_error(error) from error

    def transport_error(self, error: httpx.TransportError) -> MlftError:
        if isinstance(error, httpx.ConnectError):
            return ConnectionFailed(None, f"cannot reach the mlft server at {self.url}: {error}")
        if isinstance(error, httpx.TimeoutException):
            return ConnectionFailed(None, f"the mlft server at {self.url} did not answer in time")
        return ConnectionFailed(
            None, f"the connection to the mlft server at {self.url} broke: {error}"
        )
