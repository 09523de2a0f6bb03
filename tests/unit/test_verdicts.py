"""Verdicts are graded once, on the server: the HTML report and the report JSON (which the
dashboard only displays) carry the same levels."""

import re

import pytest

from core.reporting.job_report import evaluation_report, job_report, job_verdicts
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


def md_run(kind: str, total_ps: float, **values) -> dict:
    run = "constant_100K" if kind == "constant" else "ramp_50_800K"
    study = 250.0 if kind == "constant" else 50.0
    stable = values.get("failure_reason") is None
    return {
        "run": run,
        "kind": kind,
        "structure": "H2O",
        "survived_ps": total_ps,
        "total_ps": total_ps,
        "study_ps": study,
        "stable": stable,
    } | values


def test_a_stable_md_verdict_says_how_long_each_run_lasted_of_the_studys() -> None:
    md = [md_run("constant", 0.2), md_run("ramp", 0.1)]

    [verdict] = report_verdicts({"md": md})

    assert verdict.level == "good"
    assert verdict.value == "yes, 100 K over 0.2 of 250 ps, 50→800 K ramp over 0.1 of 50 ps"


def test_an_unstable_md_verdict_names_the_run_its_reason_and_when_it_stopped() -> None:
    heated = md_run("constant", 0.05, survived_ps=0.0235, failure_reason="temperature_runaway")
    md = [heated, md_run("ramp", 0.05)]

    [verdict] = report_verdicts({"md": md})

    assert verdict.level == "bad"
    assert verdict.value == (
        "no (1 of 2 runs failed; constant_100K on H2O: temperature runaway after 0.0235 of "
        "0.05 ps (study: 250 ps))"
    )


def test_md_that_could_judge_nothing_is_not_applicable_rather_than_stable() -> None:
    md = [{"structure": "Cu", "stable": None, "not_applicable": "Cu: a lone atom in vacuum"}]

    [verdict] = report_verdicts({"md": md})

    assert (verdict.level, verdict.value) == ("warn", "not applicable: Cu: a lone atom in vacuum")


def test_job_and_evaluation_reports_send_their_verdicts() -> None:
    section = {"md": [md_run("constant", 0.1), md_run("ramp", 0.1, failure_reason="bonds_changed")]}
    job = Job(
        id="j1",
        state=JobState.SUCCEEDED,
        spec={"strategy": {"name": "naive"}, "foundation_model": "f", "train_dataset": "d"},
        warnings=[],
        epochs=[],
        metrics=section,
    )
    evaluation = Evaluation(id="e1", spec={"model": {"job": "j1"}}, report=section)
    md = {
        "label": "MD stable",
        "value": "no (1 of 2 runs failed; ramp_50_800K on H2O: bonds changed after 0.1 of 50 ps)",
        "level": "bad",
    }
    warnings = {"label": "Warnings", "value": "0", "level": "good"}

    assert job_report(job)["verdicts"] == [md, warnings]
    assert evaluation_report(evaluation)["verdicts"] == [md, warnings]
    # What the job's row keeps for GET /jobs/{id}: the same verdicts.
    assert job_verdicts(section, []) == [md, warnings]
