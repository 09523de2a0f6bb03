"""A sweep over every strategy on the demo foundation, through the real worker."""

import time

import pytest

from core.data.demo_data import write_extxyz
from tests.conftest import upload
from tests.e2e.test_strategies import replay_structures

pytestmark = pytest.mark.e2e


def test_sweep_over_all_strategies_fills_the_comparison_table(
    client, worker, settings, target_files, tmp_path
) -> None:
    train = upload(client, target_files["train"])["id"]
    test = upload(client, target_files["test"])["id"]
    replay = upload(client, write_extxyz(replay_structures(16), tmp_path / "replay.extxyz"))["id"]
    spec = {
        "base": {
            "train_dataset": train,
            "test_dataset": test,
            "hyperparameters": {"max_num_epochs": 1, "batch_size": 10},
            "evaluation": {"md": False, "dimers": False, "replay_dataset": replay},
        },
        "replay": {"dataset": replay},
    }

    created = client.post("/sweeps", json=spec)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    deadline = time.monotonic() + 1200
    while not (sweep := client.get(f"/sweeps/{sweep_id}").json())["finished"]:
        assert time.monotonic() < deadline, sweep["jobs"]
        time.sleep(2)

    table = {row["strategy"]: row for row in sweep["table"]}
    assert len(table) == 8
    assert sweep["jobs"] == {"succeeded": 8}, [(r["strategy"], r["state"]) for r in sweep["table"]]
    for name, row in table.items():
        assert row["test_forces_rmse_mev_per_a"] > 0
        # Scratch has no foundation to forget (issue 21).
        assert row["forgetting_ratio"] is None if name == "scratch" else row["forgetting_ratio"] > 0
        assert row["wall_time_s"] > 0
    assert table["naive"]["trainable_fraction"] == 1.0
    # On a model this small, rank-4 adapters are not small next to it: only bounds are general.
    assert 0 < table["lora"]["trainable_fraction"] < 1.0
    frozen_more = table["freeze_readout_only"]["trainable_fraction"]
    assert 0 < frozen_more < table["freeze_interactions"]["trainable_fraction"] < 1.0
    recommendation = sweep["recommendation"]
    assert recommendation["single_system"]["strategy"] in table
    assert recommendation["broad_use"]["strategy"] in table
    html = client.get(f"/sweeps/{sweep_id}/report", params={"format": "html"}).text
    assert "Accuracy versus forgetting" in html and "<img" in html
