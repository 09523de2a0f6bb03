"""Evaluations and replay-set builds have the leases jobs have (issue 17, item 8): SIGKILL the
worker in the middle of one, and once its lease expires the next worker either runs it again or,
with its attempts used up, fails it with the reason; never `running` for ever."""

import signal
import sys

import pytest

from tests.conftest import upload
from tests.recovery.conftest import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL"),
]


@pytest.fixture(scope="module")
def dataset_ids(recovery_client, target_files) -> dict[str, str]:
    return {name: upload(recovery_client, path)["id"] for name, path in target_files.items()}


def row(client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def ended(client, path: str) -> dict | None:
    body = row(client, path)
    return body if body["state"] not in {"queued", "running"} else None


def test_an_evaluation_whose_worker_was_killed_fails_with_the_reason_after_its_last_attempt(
    recovery_client, start_worker, dataset_ids
) -> None:
    first = start_worker("evaluation-first")
    created = recovery_client.post(
        "/evaluations",
        json={
            "model": {"foundation_model": "mace-demo-emt"},
            "dataset": dataset_ids["test"],
            "settings": {"md": True, "md_structures": 10, "dimers": False},
        },
    )
    assert created.status_code == 201, created.text
    path = f"/evaluations/{created.json()['id']}"
    wait_until(
        lambda: (row(recovery_client, path)["stage"] or "").startswith(
            ("molecular dynamics", "md ")
        ),
        300,
        "the evaluation's molecular dynamics",
    )

    first.send_signal(signal.SIGKILL)
    first.wait()

    assert row(recovery_client, path)["state"] == "running"
    # One attempt allowed: the next worker's sweep fails it once the lease has expired.
    second = start_worker("evaluation-second", max_attempts=1)
    done = wait_until(lambda: ended(recovery_client, path), 120, "the evaluation to end")

    assert done["state"] == "failed", second.log_path.read_text()[-3000:]
    assert "stopped 1 time(s)" in done["error"] and "MLFT_MAX_ATTEMPTS" in done["error"]
    assert done["attempts"] == 1


def test_a_replay_set_whose_worker_was_killed_is_rebuilt_by_the_next_worker(
    recovery_client, start_worker, dataset_ids
) -> None:
    first = start_worker("replay-first")
    spec = {"train_dataset": dataset_ids["train"], "size": 40, "seed": 31}
    created = recovery_client.post("/replay-sets", json=spec)
    assert created.status_code == 201, created.text
    path = f"/replay-sets/{created.json()['id']}"
    wait_until(
        lambda: row(recovery_client, path)["progress"] is not None,
        300,
        "the replay set's build to make progress",
    )

    first.send_signal(signal.SIGKILL)
    first.wait()

    assert row(recovery_client, path)["state"] == "running"
    # While it is stuck, the same request is handed the same set, which is being recovered.
    assert recovery_client.post("/replay-sets", json=spec).json()["id"] == created.json()["id"]
    second = start_worker("replay-second")
    done = wait_until(lambda: ended(recovery_client, path), 600, "the rebuilt replay set")

    assert done["state"] == "succeeded", (done["error"], second.log_path.read_text()[-3000:])
    assert done["attempts"] == 2
    assert done["dataset_id"] is not None
