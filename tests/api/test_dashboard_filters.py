"""The dashboard's lists filter the same way the API's do (issue 28): each filter the dashboard
sends is a query parameter its list route takes, and the page that draws it is served."""

import re

import pytest

LIST_ROUTES = {"jobs": "/jobs", "sweeps": "/sweeps", "datasets": "/datasets"}


def _dashboard_filters(source: str) -> dict[str, list[str]]:
    """FILTERS of api/dashboard/js/filters.js: each list's query parameters."""
    block = re.search(r"export const FILTERS = \{(.*?)\n\};", source, re.S)
    assert block is not None, "filters.js no longer declares FILTERS"
    lists = re.findall(r"(\w+): \[(.*?)\],?\n  (?=\w|$)", block.group(1) + "\n  ", re.S)
    return {name: re.findall(r'\["(\w+)", "', body) for name, body in lists}


@pytest.fixture(scope="module")
def served_filters(client) -> dict[str, list[str]]:
    response = client.get("/dashboard/js/filters.js")
    assert response.status_code == 200
    return _dashboard_filters(response.text)


def test_the_dashboard_filters_every_list(served_filters) -> None:
    assert set(served_filters) == set(LIST_ROUTES)
    assert {"state", "strategy", "foundation", "name_contains", "tag"} <= set(
        served_filters["jobs"]
    )


@pytest.mark.parametrize("name", sorted(LIST_ROUTES))
def test_each_dashboard_filter_is_a_parameter_of_its_list_route(
    client, served_filters, name
) -> None:
    operation = client.get("/openapi.json").json()["paths"][LIST_ROUTES[name]]["get"]
    taken = {
        parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "query"
    }

    assert set(served_filters[name]) <= taken


def test_the_pages_use_the_filter_bar(client) -> None:
    for page in ("jobs", "sweeps", "datasets"):
        source = client.get(f"/dashboard/js/pages/{page}.js").text
        assert f'filterBar("{page}"' in source, page
