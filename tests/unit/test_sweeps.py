"""A sweep expands into one job per strategy and grid point; the table ranks their results."""

import pytest
from pydantic import ValidationError

from core.workflows.sweeps import SweepSpec, distinguishing_digits, expand, recommend

BASE = {"train_dataset": "d", "hyperparameters": {"max_num_epochs": 1}}


def test_default_sweep_is_every_strategy_once() -> None:
    specs = expand(SweepSpec(base=BASE, replay={"dataset": "r"}))
    assert [spec.strategy.name for spec in specs] == [
        "naive",
        "freeze_interactions",
        "freeze_readout_only",
        "lora",
        "multihead_replay",
        "pseudolabel_replay",
        "replay_lora",
        "scratch",
    ]
    assert all(spec.hyperparameters.max_num_epochs == 1 for spec in specs)


def test_grid_multiplies_points_and_lora_ranks_apply_to_lora_only() -> None:
    spec = SweepSpec(
        base=BASE,
        strategies=["naive", "lora"],
        grid={"lr": [1e-3, 1e-4], "lora_rank": [2, 8], "train_fraction": [0.5]},
    )
    specs = expand(spec)
    assert len(specs) == 2 + 2 * 2
    assert {spec.strategy.rank for spec in specs if spec.strategy.name == "lora"} == {2, 8}
    assert {spec.hyperparameters.lr for spec in specs} == {1e-3, 1e-4}
    assert all(spec.train_fraction == 0.5 for spec in specs)


def test_replay_strategies_without_a_replay_set_are_refused() -> None:
    with pytest.raises(ValidationError, match="replay"):
        SweepSpec(base=BASE, strategies=["pseudolabel_replay"])


def test_recommendation_names_the_measured_winners() -> None:
    rows = [
        {
            "strategy": "naive",
            "job_id": "a",
            "state": "succeeded",
            "test_forces_rmse_mev_per_a": 10.0,
            "forgetting_ratio": 40.0,
            "dimer_holes": 0,
            "md_stable": True,
        },
        {
            "strategy": "pseudolabel_replay",
            "job_id": "b",
            "state": "succeeded",
            "test_forces_rmse_mev_per_a": 14.0,
            "forgetting_ratio": 1.2,
            "dimer_holes": 0,
            "md_stable": True,
        },
        {
            "strategy": "scratch",
            "job_id": "c",
            "state": "failed",
            "test_forces_rmse_mev_per_a": 1.0,
            "forgetting_ratio": 0.1,
            "dimer_holes": None,
            "md_stable": None,
        },
    ]
    choice = recommend(rows)
    assert choice["single_system"]["strategy"] == "naive"
    assert choice["broad_use"]["strategy"] == "pseudolabel_replay"
    assert "1.2" in choice["broad_use"]["reason"]


def test_recommendation_prints_the_best_and_runner_up_apart() -> None:
    def row(strategy: str, job_id: str, forces: float, ratio: float) -> dict:
        return {
            "strategy": strategy,
            "job_id": job_id,
            "state": "succeeded",
            "test_forces_rmse_mev_per_a": forces,
            "forgetting_ratio": ratio,
            "dimer_holes": 0,
            "md_stable": True,
        }

    rows = [row("multihead_replay", "a", 231.41, 1.00123), row("naive", "b", 231.44, 1.00148)]

    choice = recommend(rows)

    assert choice["broad_use"]["strategy"] == "multihead_replay"
    assert "multihead_replay (a) 1.0012, naive (b) 1.0015" in choice["broad_use"]["reason"]
    assert "multihead_replay (a) 231.41, naive (b) 231.44" in choice["single_system"]["reason"]


def test_recommendation_numbers_keep_three_significant_digits_when_they_differ() -> None:
    assert distinguishing_digits([40.0123, 1.2]) == 3
    assert distinguishing_digits([1.00123, 1.00148]) == 5
    assert distinguishing_digits([2.0, 2.0]) == 3
    assert distinguishing_digits([1.0000001, 1.0000002]) == 6
