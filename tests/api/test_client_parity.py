"""Every route of the API has a `Client` method (issue 28 item 1): the test walks the app's
OpenAPI document, so a new route without one fails here."""

from fastapi import FastAPI

from mlft_client import Client
from mlft_client.transport import routes_of

# Routes a researcher's client has no use for, each with its reason.
NOT_FOR_THE_CLIENT = {
    ("GET", "/health"): "liveness probe for orchestrators (kept for old deployments)",
    ("GET", "/healthz"): "liveness probe for orchestrators",
    ("GET", "/readyz"): "readiness probe for orchestrators and load balancers",
    ("GET", "/metrics"): "Prometheus scrapes it; people read the dashboards built on it",
}


def openapi_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_route_of_the_api_has_a_client_method(app: FastAPI) -> None:
    missing = openapi_routes(app) - routes_of(Client).keys() - NOT_FOR_THE_CLIENT.keys()

    assert sorted(missing) == []


def test_the_exclusions_name_routes_that_exist(app: FastAPI) -> None:
    # A route removed or renamed must leave the list too, so it cannot hide a new one.
    assert NOT_FOR_THE_CLIENT.keys() <= openapi_routes(app)


def test_methods_name_routes_in_the_servers_spelling(app: FastAPI) -> None:
    """A method's route that the server lacks is one still being built on the server side (a
    contract of issue 28) or misspelt; only these may be absent."""
    expected_later = {
        ("GET", "/evaluations"),
        ("DELETE", "/datasets/{dataset_id}"),
    }

    assert routes_of(Client).keys() - openapi_routes(app) <= expected_later
