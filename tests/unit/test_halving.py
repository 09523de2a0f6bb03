"""Successive halving's rule over a sweep's jobs (issue 27 item 4)."""

import pytest

from core.science.halving import early_stopping_applies, judge, rung_epochs, value_after


@pytest.mark.parametrize(
    ("epochs", "rungs"), [(6, [2, 4]), (9, [3, 6]), (3, [1, 2]), (2, [1]), (1, [])]
)
def test_rungs_fall_after_a_third_and_two_thirds_of_the_epochs(epochs, rungs) -> None:
    assert rung_epochs(epochs) == rungs


def test_a_job_first_at_its_rung_goes_on() -> None:
    assert not judge(2, 500.0, []).stop


def test_a_job_outside_the_top_third_and_clearly_behind_stops() -> None:
    verdict = judge(2, 80.0, [40.0, 45.0, 60.0])

    assert verdict.stop
    assert (verdict.rank, verdict.ranked, verdict.keep) == (4, 4, 2)
    assert "100% above the best 40" in verdict.reason


def test_a_job_in_the_top_third_goes_on_however_far_from_the_best() -> None:
    assert not judge(2, 90.0, [30.0, 100.0, 120.0, 150.0]).stop


def test_a_job_within_the_margin_of_the_best_goes_on_whatever_its_rank() -> None:
    verdict = judge(2, 41.0, [40.0, 40.5, 40.8, 40.9])

    assert not verdict.stop
    assert "within 10%" in verdict.reason


def test_the_value_after_a_rung_is_the_target_head_s_record_of_that_epoch() -> None:
    curve = [
        {"epoch": None, "head": "target", "valid_forces_rmse_mev_per_a": 99.0},
        {"epoch": 1, "head": "replay", "valid_forces_rmse_mev_per_a": 7.0},
        {"epoch": 1, "head": "target", "valid_forces_rmse_mev_per_a": 12.0},
    ]

    assert value_after(curve, 2) == 12.0
    assert value_after(curve, 3) is None


def test_early_stopping_is_on_by_default_from_four_jobs() -> None:
    assert not early_stopping_applies(None, 3)
    assert early_stopping_applies(None, 4)
    assert early_stopping_applies(True, 2)
    assert not early_stopping_applies(False, 8)
