"""GET /strategies: the dashboard's new-job form reads the strategies from the service's table."""

from core.science.spec import E0_METHOD_SUMMARIES, JobSpec
from core.science.strategy_table import STRATEGIES


def test_strategies_are_the_table_with_presets_and_every_e0_method(client) -> None:
    response = client.get("/strategies")

    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["name"] for item in body["strategies"]] == list(STRATEGIES)
    for item in body["strategies"]:
        traits = STRATEGIES[item["name"]]
        assert (item["lr"], item["ema_decay"], item["clip_grad"]) == (
            traits.preset.lr,
            traits.preset.ema_decay,
            traits.preset.clip_grad,
        )
        assert item["freeze_level"] == traits.freeze_level
        assert item["trainable"] == traits.trainable
    assert {item["name"]: item["summary"] for item in body["e0_methods"]} == E0_METHOD_SUMMARIES


def test_every_listed_strategy_is_one_the_job_spec_accepts(client) -> None:
    for item in client.get("/strategies").json()["strategies"]:
        strategy = {"name": item["name"]}
        if item["replay"]:
            strategy["replay"] = {"dataset": "r"}
        e0s = "estimated" if item["foundation"] else "average"
        assert JobSpec(train_dataset="d", strategy=strategy, e0s=e0s).strategy.name == item["name"]


def test_the_openapi_document_types_the_strategies_route(client) -> None:
    schema = client.get("/openapi.json").json()
    answer = schema["paths"]["/strategies"]["get"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"]["$ref"].endswith("/StrategiesPublic")
