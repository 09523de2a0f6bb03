"""Issue 19 item 3: the report models describe every key the evaluation stores, read rows
written before a field existed, and keep the stored JSON as it was."""

import pytest
import torch

from core.data.demo_data import generate_target_dataset
from core.evaluation.suite import EvaluationData, evaluate_model
from core.reporting.report_models import (
    ErrorMetricsReport,
    EvaluationSections,
    JobReport,
    field_name,
    undeclared_keys,
)
from core.reporting.reports import render_html
from core.science.spec import EvaluationSettings


def test_every_key_the_evaluation_stores_is_a_field_of_the_models(demo_foundation) -> None:
    foundation = torch.load(demo_foundation, map_location="cpu", weights_only=False)
    molecules = generate_target_dataset(3, seed=3, system="molecules")

    stored = evaluate_model(
        foundation,
        EvaluationData(test=molecules, replay=molecules),
        EvaluationSettings(md_steps=10),
        foundation=foundation,
    )
    sections = EvaluationSections.model_validate(stored)

    assert set(stored) == {"accuracy", "forgetting", "md", "rdf", "dimers"}
    assert undeclared_keys(sections) == []
    assert sections.to_json() == stored


def test_a_row_written_before_a_field_existed_keeps_its_shape() -> None:
    old = {
        "accuracy": {"test": {"forces_rmse_mev_per_a": 30.0}},
        "md": [{"stable": True}],
        "dimers": {"holes": []},
    }

    report = JobReport.from_json(old)

    assert report.accuracy is not None and report.accuracy["test"].forces_rmse_mev_per_a == 30.0
    assert report.accuracy["test"].parity is None and report.forgetting is None
    assert report.to_json() == old


def test_keys_a_newer_producer_adds_travel_through_and_are_reported() -> None:
    row = {"forgetting": {"force_rmse_ratio": 1.2, "grade": "bad", "dataset": "spice"}}

    report = JobReport.from_json(row)

    assert report.to_json() == row
    assert undeclared_keys(report) == ["forgetting.dataset", "forgetting.grade"]
    assert "Forgetting" in render_html(row)


def test_a_table_column_naming_no_metric_fails_at_once() -> None:
    assert field_name(ErrorMetricsReport, "forces_rmse_mev_per_a") == "forces_rmse_mev_per_a"
    with pytest.raises(AttributeError, match="force_rmse"):
        field_name(ErrorMetricsReport, "force_rmse")
