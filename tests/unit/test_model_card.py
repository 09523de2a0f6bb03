"""The model card: every field a user needs to trust or reproduce a model, as JSON and Markdown."""

from core.reporting.model_card import build_model_card, render_markdown


def card() -> dict:
    return build_model_card(
        job_id="job1",
        spec={"strategy": {"name": "lora", "rank": 4}, "level_of_theory": "PBE-D3"},
        foundation={"name": "mace-demo-emt", "sha256": "a" * 64},
        datasets={
            "train": {"id": "d1", "name": "train.xyz", "sha256": "b" * 64, "n_configs": 40,
                      "size_bytes": 1234},
        },
        effective_hyperparameters={"lr": 0.01, "max_num_epochs": 2},
        e0s={"method": "estimated", "e0s": {"H": -13.6, "C": -1026.9}},
        metrics={
            "accuracy": {"test": {"n_configs": 8, "energy_rmse_mev_per_atom": 1.5,
                                  "forces_rmse_mev_per_a": 30.0}},
            "forgetting": {"force_rmse_ratio": 2.5},
            "md": [{"run": "constant_100K", "structure": "H2O", "survived_ps": 1.0,
                    "total_ps": 1.0, "stable": True}],
        },
        checks={"e0s": {"verified": True}},
        split={"counts": {"train": 30, "valid": 4, "test": 6}, "group_by": None, "seed": 1},
        preflight={"foundation_errors": {}, "findings": [{"code": "x", "severity": "info"}]},
        cost=None,
        exports={"torchscript": {"ok": True, "max_energy_difference_ev": 0.0,
                                 "max_forces_difference_ev_per_a": 0.0}},
        created_at="2026-11-25T00:00:00+00:00",
    )  # fmt: skip


def test_the_card_carries_provenance_metrics_and_software() -> None:
    result = card()

    assert result["foundation_model"]["sha256"] == "a" * 64
    assert result["level_of_theory"] == "PBE-D3"
    assert result["e0s"] == {"method": "estimated", "values_ev": {"H": -13.6, "C": -1026.9}}
    assert result["metrics"]["test_forces_rmse_mev_per_a"] == 30.0
    assert result["metrics"]["forgetting_force_rmse_ratio"] == 2.5
    assert result["metrics"]["md_stable"] is True
    assert result["software"]["mace-torch"] and result["software"]["torch"]


def test_the_markdown_card_lists_data_e0s_metrics_and_exports() -> None:
    text = render_markdown(card())

    assert text.startswith("# Model card: mlft job job1")
    assert "`" + "b" * 64 + "`" in text
    assert "| C | -1026.900000 |" in text
    assert "| torchscript | yes |" in text
    assert "PBE-D3" in text
