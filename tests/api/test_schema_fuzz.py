"""Property-based requests generated from the OpenAPI schema: no input makes the API answer 5xx.

No worker consumes the queue here: jobs the fuzzer manages to create stay queued.
"""

import schemathesis
from hypothesis import HealthCheck, given, settings

# Per operation; about 20 operations keep the whole run well under a minute.
EXAMPLES_PER_OPERATION = 25


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
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}\n  {case.as_curl_command()}"
                )

        no_server_error()

    assert len(operations) >= 15
    assert not server_errors, "\n".join(server_errors[:10])
