"""Property-based requests generated from the OpenAPI schema: no input makes the API answer 5xx.

No worker consumes the queue here: jobs the fuzzer manages to create stay queued.
"""

import contextlib
import json
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition

# Per operation; about 20 operations keep the whole run well under a minute.
EXAMPLES_PER_OPERATION = 25
HOSTILE_EXAMPLES_PER_OPERATION = 10
# What a schema-valid generator never produces but a hostile client sends: Python's JSON reads
# NaN and Infinity, PostgreSQL refuses NUL, and long strings overflow columns.
HOSTILE_VALUES: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    "\x00",
    "id\x00",
    "x" * 5000,
    "../" * 40 + "etc/passwd",
    2**70,
    -(2**63),
]


def test_no_generated_request_gets_a_server_error(app) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    server_errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case) -> None:
            try:
                response = case.call()
            except Exception as error:  # the test client re-raises what the app did not handle
                server_errors.append(f"{case.method} {case.formatted_path} raised {error!r}")
                return
            if is_server_error(case.path, response):
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}\n  {case.as_curl_command()}"
                )

        no_server_error()

    assert len(operations) >= 15
    assert not server_errors, "\n".join(server_errors[:10])


def _leaves(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every leaf of a decoded JSON document."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    found = []
    for key, item in items:
        found += _leaves(item) if isinstance(item, dict | list) and item else [(value, key)]
    return found


def _with_hostile_value(case, hostile: Any, pick: int) -> tuple[str, bytes | None]:
    """The case's path and JSON body with one path parameter or body leaf made hostile."""
    body = case.body if isinstance(case.body, dict | list) else None
    spots = _leaves(body) if body else []
    parameters = dict(case.path_parameters or {})
    targets = [("body", spot) for spot in spots] + [("path", name) for name in parameters]
    if targets:
        where, spot = targets[pick % len(targets)]
        if where == "body":
            container, key = spot
            container[key] = hostile
        else:
            parameters[spot] = hostile if isinstance(hostile, str) else json.dumps(hostile)
    path = case.operation.path
    for name, value in parameters.items():
        path = path.replace(f"{{{name}}}", quote(str(value), safe=""))
    # Written as Python's json writes it: bare NaN and Infinity, as a careless client would.
    return path, json.dumps(body).encode() if body is not None else None


def test_hostile_values_in_generated_requests_get_no_server_error(app, client) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    server_errors: list[str] = []
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if "{" in result.ok().path or result.ok().body
    ]
    if not operations:
        pytest.fail("no operation takes a path parameter or a body")

    for operation in operations:

        @given(
            case=operation.as_strategy(),
            hostile=st.sampled_from(HOSTILE_VALUES),
            pick=st.integers(min_value=0, max_value=1000),
        )
        @settings(
            max_examples=HOSTILE_EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case, hostile, pick) -> None:
            if case.media_type and case.media_type != "application/json":
                return  # uploads: the hand-written cases cover hostile file names
            path, body = _with_hostile_value(case, hostile, pick)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            try:
                response = client.request(
                    case.method, path, content=body, params=case.query, headers=headers
                )
            except Exception as error:  # the test client re-raises what the app did not handle
                server_errors.append(f"{case.method} {path} raised {error!r} body={body!r:.300}")
                return
            if is_server_error(case.path, response):
                server_errors.append(
                    f"{case.method} {path} -> {response.status_code}: {response.text[:300]} "
                    f"body={body!r:.300}"
                )
            elif response.headers.get("content-type", "").startswith("application/json"):
                # Every answer is strict JSON, even one that echoes a NaN back.
                json.loads(response.text, parse_constant=pytest.fail)

        no_server_error()

    assert len(operations) >= 10
    assert not server_errors, "\n".join(server_errors[:10])


# Scenarios of up to this many chained calls; with these numbers the run takes well under 60 s.
STATEFUL_SCENARIOS = 20
STATEFUL_STEPS = 6


def test_chains_of_calls_along_the_links_get_no_server_error(app) -> None:
    """Schemathesis' stateful mode: a created dataset, job, evaluation, sweep, replay set,
    project or token is read, cancelled or deleted next, along the schema's links."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    links = [
        name
        for operations in app.openapi()["paths"].values()
        for operation in operations.values()
        for response in operation.get("responses", {}).values()
        for name in response.get("links", {})
    ]
    server_errors: list[str] = []
    answered: list[str] = []

    class Workflow(schema.as_state_machine()):
        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            answered.append(f"{case.method} {case.path}")
            if is_server_error(case.path, response):
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}\n  {case.as_curl_command()}"
                )

    # The database remembers earlier scenarios (a project name taken is a 409 the second time),
    # so a replayed scenario may take another path and Hypothesis stops there; the answers seen
    # until then are checked all the same, and there must be enough of them.
    with contextlib.suppress(FlakyStrategyDefinition):
        Workflow.run(
            settings=settings(
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=STATEFUL_STEPS,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
        )

    assert len(answered) >= STATEFUL_SCENARIOS
    assert {"GET /jobs/{job_id}", "GET /datasets/{dataset_id}"} <= set(links)
    assert not any(name.endswith("/events") for name in links)
    assert not server_errors, "\n".join(server_errors[:10])


def is_server_error(path: str, response) -> bool:
    """A 5xx that is a fault: /readyz's 503 is its answer (not ready), and a 503 with
    Retry-After is the service shedding load as it should (issue 17), not failing."""
    shedding = response.status_code == 503 and (
        path == "/readyz" or "retry-after" in response.headers
    )
    return response.status_code >= 500 and not shedding
