"""Structured errors (issue 28): every 4xx keeps `detail` and adds a machine-readable `code`, and
`param`, the path of the request field at fault, when there is one field to blame."""

import pytest

from api.errors import validation_param
from tests.conftest import upload


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


def test_an_unknown_job_is_404_with_code_not_found(client) -> None:
    response = client.get("/jobs/0123456789abcdef0123456789abcdef")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "does not exist" in response.json()["detail"]
    assert "param" not in response.json()


def test_an_unknown_route_and_a_wrong_method_have_codes_too(client) -> None:
    missing = client.get("/no-such-route")
    wrong_method = client.delete("/strategies")

    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert missing.json()["detail"] == "Not Found"
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")


def test_a_field_failing_validation_is_named_by_its_json_path(client, train_id) -> None:
    # The strategies are a discriminated union: pydantic's loc holds the tag ("lora"), which is
    # no key of the request.
    response = client.post(
        "/jobs", json={"train_dataset": train_id, "strategy": {"name": "lora", "rank": "four"}}
    )

    body = response.json()
    assert response.status_code == 422
    assert body["code"] == "validation_error"
    assert body["param"] == "strategy.rank"
    assert body["detail"][0]["param"] == "strategy.rank"
    assert body["detail"][0]["loc"] == ["body", "strategy", "lora", "rank"]


def test_a_missing_field_and_a_bad_query_parameter_are_named(client) -> None:
    missing = client.post("/jobs", json={"hyperparameters": {"max_num_epochs": 2}})
    paging = client.get("/jobs", params={"limit": 0})

    assert (missing.json()["code"], missing.json()["param"]) == (
        "validation_error",
        "train_dataset",
    )
    assert (paging.status_code, paging.json()["param"]) == (422, "limit")


def test_two_fields_at_fault_name_no_single_param_but_each_problem_its_own(
    client, train_id
) -> None:
    response = client.post(
        "/jobs",
        json={
            "train_dataset": train_id,
            "valid_fraction": 2,
            "hyperparameters": {"max_num_epochs": -1},
        },
    )

    body = response.json()
    assert response.status_code == 422
    assert "param" not in body
    assert sorted(item["param"] for item in body["detail"]) == [
        "hyperparameters.max_num_epochs",
        "valid_fraction",
    ]


def test_a_domain_error_names_the_spec_field_it_is_about(client, train_id) -> None:
    unknown = client.post("/jobs", json={"train_dataset": "f" * 32})
    bad_test_set = client.post("/jobs", json={"train_dataset": train_id, "test_dataset": "e" * 32})

    assert unknown.status_code == 422
    assert unknown.json() == {
        "detail": f"train_dataset {'f' * 32} does not exist",
        "code": "invalid_spec",
        "param": "train_dataset",
    }
    assert (bad_test_set.json()["code"], bad_test_set.json()["param"]) == (
        "invalid_spec",
        "test_dataset",
    )


def test_a_conflict_on_an_artifact_has_its_code(client, train_id) -> None:
    job = client.post("/jobs", json={"train_dataset": train_id}).json()

    response = client.get(f"/jobs/{job['id']}/model")

    assert response.status_code == 409
    assert response.json()["code"] == "artifact_missing"


def test_an_upload_that_is_not_multipart_is_an_invalid_dataset(client) -> None:
    response = client.post("/datasets", content=b"x", headers={"Content-Type": "text/plain"})

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_dataset"


def test_a_nul_byte_in_the_path_has_a_code(client) -> None:
    response = client.get("/jobs/%00")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("loc", "given", "param"),
    [
        (
            ("body", "strategy", "lora", "rank"),
            {"strategy": {"name": "lora", "rank": "x"}},
            "strategy.rank",
        ),
        (("body", "e0s", "dict[str,float]", "H"), {"e0s": {"H": "x"}}, "e0s.H"),
        (("body", "tags", "a b"), {"tags": {"a b": "1"}}, "tags.a b"),
        (("body", "grid", "lr", 1), {"grid": {"lr": [0.1, -1]}}, "grid.lr[1]"),
        (("body",), {"x": 1}, None),
        (("query", "limit"), None, "limit"),
    ],
)
def test_validation_param_walks_the_request_leaving_tags_out(loc, given, param) -> None:
    assert validation_param(loc, given) == param
