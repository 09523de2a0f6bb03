"""Verdicts are graded once, on the server: the HTML report and the report JSON (which the
dashboard only displays) carry the same levels."""

import re

import pytest

from core.reporting.job_report import evaluation_report, job_report
from core.reporting.reports import render_html
from core.reporting.verdicts import (
    FORCE_RMSE_LIMITS_MEV_PER_A,
    FORGETTING_RATIO_LIMITS,
    report_verdicts,
    verdicts_json,
)
from core.service.models import Evaluation, Job, JobState
from tests.unit.test_reports import full_report


@pytest.mark.parametrize(
    ("rmse", "level"),
    [
        (FORCE_RMSE_LIMITS_MEV_PER_A[0], "good"),
        (FORCE_RMSE_LIMITS_MEV_PER_A[1], "warn"),
        (FORCE_RMSE_LIMITS_MEV_PER_A[1] + 0.1, "bad"),
    ],
)
def test_the_force_verdict_follows_its_limits(rmse: float, level: str) -> None:
    [verdict] = report_verdicts({"accuracy": {"test": {"forces_rmse_mev_per_a": rmse}}})
    assert (verdict.label, verdict.level) == ("test force RMSE", level)


@pytest.mark.parametrize(
    ("ratio", "level"),
    [(FORGETTING_RATIO_LIMITS[0], "good"), (2.0, "warn"), (FORGETTING_RATIO_LIMITS[1] * 2, "bad")],
)
def test_the_forgetting_verdict_follows_its_limits(ratio: float, level: str) -> None:
    [verdict] = report_verdicts({"forgetting": {"force_rmse_ratio": ratio}})
    assert verdict.level == level


def test_the_html_badges_are_the_verdicts_of_the_json() -> None:
    report = full_report()
    html = render_html(report)
    badges = re.findall(r'<div class="badge (\w+)">([^<]*)<b>([^<]*)</b>', html)
    expected = [(v["level"], v["label"], v["value"]) for v in verdicts_json(report)]
    assert [(level, label, value.replace("&#x27;", "'")) for level, label, value in badges] == (
        expected
    )
    assert len(expected) == 5


def test_job_and_evaluation_reports_send_their_verdicts() -> None:
    section = {"md": [{"stable": True}, {"stable": False}]}
    job = Job(
        id="j1",
        state=JobState.SUCCEEDED,
        spec={"strategy": {"name": "naive"}, "foundation_model": "f", "train_dataset": "d"},
        warnings=[],
        epochs=[],
        metrics=section,
    )
    evaluation = Evaluation(id="e1", spec={"model": {"job": "j1"}}, report=section)
    md = {"label": "MD stable", "value": "no (1 of 2 runs failed)", "level": "bad"}
    warnings = {"label": "Warnings", "value": "0", "level": "good"}

    assert job_report(job)["verdicts"] == [md, warnings]
    assert evaluation_report(evaluation)["verdicts"] == [md, warnings]
