"""OpenAPI links from each creating POST to the routes of what it created.

`POST /jobs` answers a job whose `id` is the `{job_id}` of `GET /jobs/{job_id}`, of its cancel,
report and model routes, and so on for datasets, evaluations, sweeps, replay sets, projects and
their tokens. Clients and generators (schemathesis' stateful mode, issue 17) follow them to chain
calls. Derived from the paths, so that a new route under a created resource is linked as well.
"""

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

PATH_PARAMETER = re.compile(r"\{([^}]+)\}")
# A stream that lasts as long as its job: a generator following the link would wait on it.
UNLINKED_SUFFIXES = ("/events",)


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    paths = schema.get("paths", {})
    for path, operations in paths.items():
        creating = operations.get("post")
        if creating is None:
            continue
        for child, child_operations in paths.items():
            parameter = _created_parameter(path, child)
            if parameter is None or child.endswith(UNLINKED_SUFFIXES):
                continue
            for method in child_operations:
                _link(creating, path, child, method, parameter)
    return schema


def _created_parameter(path: str, child: str) -> str | None:
    """`job_id` for /jobs and /jobs/{job_id}/...: the parameter the creation's id fills."""
    match = re.fullmatch(re.escape(path) + r"/\{([^}]+)\}(/.*)?", child)
    return match.group(1) if match else None


def _link(creating: dict, path: str, child: str, method: str, parameter: str) -> None:
    parameters = {name: f"$request.path.{name}" for name in PATH_PARAMETER.findall(path)}
    parameters[parameter] = "$response.body#/id"
    reference = "#/paths/" + child.replace("~", "~0").replace("/", "~1") + f"/{method}"
    name = f"{method.upper()} {child}"
    for status, response in creating.get("responses", {}).items():
        if status.startswith("2"):
            response.setdefault("links", {})[name] = {
                "operationRef": reference,
                "parameters": parameters,
            }


def install_links(app: FastAPI) -> None:
    """The app's /openapi.json gets the links (built once, as FastAPI caches the schema)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return add_links(build())

    app.openapi = openapi  # type: ignore[method-assign]
