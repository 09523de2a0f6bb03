"""Issue 19 item 3: the OpenAPI document says what every route returns, so that generated clients
(openapi-generator, openapi-typescript) get real types rather than "any object"."""

from typing import Any

SUCCESS = ("200", "201")


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def _typed(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """An object with named fields, or an array of them; a bare `object` says nothing."""
    schema = _resolved(document, schema)
    if schema.get("type") == "array":
        return _typed(document, schema.get("items") or {})
    return bool(schema.get("properties"))


def _untyped_responses(document: dict[str, Any]) -> list[str]:
    untyped = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code in SUCCESS:
                response = operation["responses"].get(code)
                if response is None:
                    continue
                where = f"{method.upper()} {path} {code}"
                content = response.get("content")
                if not content:
                    untyped.append(f"{where}: no media type")
                elif "application/json" in content and not _typed(
                    document, content["application/json"].get("schema") or {}
                ):
                    untyped.append(f"{where}: JSON without a response schema")
    return untyped


def test_every_route_documents_what_it_returns(app) -> None:
    document = app.openapi()

    assert _untyped_responses(document) == []


def test_files_streams_and_pages_name_their_media_type(app) -> None:
    paths = app.openapi()["paths"]

    def media(path: str) -> set[str]:
        return set(paths[path]["get"]["responses"]["200"]["content"])

    assert media("/jobs/{job_id}/model") == {"application/octet-stream"}
    assert media("/jobs/{job_id}/rss-holes.extxyz") == {"chemical/x-extxyz"}
    assert media("/jobs/{job_id}/events") == {"text/event-stream"}
    assert media("/jobs/{job_id}/report") == {"application/json", "text/html"}
    assert media("/jobs/{job_id}/model-card") == {"application/json", "text/markdown"}


def test_the_report_schema_names_the_metrics(app) -> None:
    document = app.openapi()
    report = document["paths"]["/jobs/{job_id}/report"]["get"]["responses"]["200"]
    schema = _resolved(document, report["content"]["application/json"]["schema"])
    by_dataset = schema["properties"]["accuracy"]["anyOf"][0]
    accuracy = _resolved(document, by_dataset["additionalProperties"])

    assert "forces_rmse_mev_per_a" in accuracy["properties"]
    assert "per_config_type" in accuracy["properties"]
