"""A sweep whose successive halving stops a loser at its first rung, through the real worker and
mace-torch (issue 27 item 4)."""

import time

import pytest

from tests.conftest import upload

pytestmark = pytest.mark.e2e

EPOCHS = 6  # rungs after 2 and 4 epochs


def test_a_sweep_stops_the_strategy_clearly_behind_and_keeps_its_model_and_curve(
    client, worker, settings, target_files
) -> None:
    train = upload(client, target_files["train"])["id"]
    test = upload(client, target_files["test"])["id"]
    spec = {
        "base": {
            "train_dataset": train,
            "test_dataset": test,
            "hyperparameters": {"max_num_epochs": EPOCHS, "batch_size": 10},
            "evaluation": {"md": False, "dimers": False},
        },
        # Fine-tuning the foundation first; a model from scratch is far behind it after 2 epochs.
        "strategies": ["naive", "scratch"],
        "early_stopping": True,
    }

    created = client.post("/sweeps", json=spec)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    deadline = time.monotonic() + 900
    while not (sweep := client.get(f"/sweeps/{sweep_id}").json())["finished"]:
        assert time.monotonic() < deadline, sweep["jobs"]
        time.sleep(2)

    rows = {row["strategy"]: row for row in sweep["table"]}
    assert sweep["jobs"] == {"succeeded": 1, "stopped_early": 1}, sweep["table"]
    assert rows["naive"]["state"] == "succeeded"
    assert rows["naive"]["test_forces_rmse_mev_per_a"] > 0
    stopped = client.get(f"/jobs/{rows['scratch']['job_id']}?include=epochs").json()
    assert stopped["state"] == "stopped_early"
    trained = {e["epoch"] for e in stopped["epochs"] if e["epoch"] is not None}
    assert trained == {0, 1}  # mace waited at the rung and stopped there
    assert client.get(f"/jobs/{stopped['id']}/model").status_code == 200
    assert rows["scratch"]["test_forces_rmse_mev_per_a"] is None  # not evaluated
    halving = sweep["early_stopping"]
    assert "successive halving" in halving["rule"]
    assert [job["strategy"] for job in halving["stopped"]] == ["scratch"]
    assert halving["stopped"][0]["after_epochs"] == 2
    assert sweep["recommendation"]["single_system"]["strategy"] == "naive"
    html = client.get(f"/sweeps/{sweep_id}/report", params={"format": "html"}).text
    assert "Stopped early" in html
