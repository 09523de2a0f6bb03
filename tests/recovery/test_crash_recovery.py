"""Crash recovery with real workers: SIGKILL one in the middle of training, start another, and
the job resumes from its last checkpoint (the one in artifact storage); cancelling stops the
training process."""

import json
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from core.artifacts.storage import storage_from_settings
from core.artifacts.storage_keys import checkpoint_pointer_key
from core.workflows.checkpoints import checkpoint_epoch
from tests.conftest import upload
from tests.recovery.conftest import training_processes, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
EPOCHS = 12


@pytest.fixture(scope="module")
def train_id(recovery_client, target_files) -> str:
    return upload(recovery_client, target_files["train"])["id"]


def spec(train_id: str, epochs: int) -> dict:
    # The foundation's own E0s are far off these data, so validation improves every epoch and
    # mace (which checkpoints on improvement) leaves a checkpoint per epoch.
    return {
        "train_dataset": train_id,
        "e0s": "foundation",
        "preflight": {"acknowledge": ["reference_mismatch"]},
        "hyperparameters": {"max_num_epochs": epochs, "batch_size": 4},
        "evaluation": {"md": False, "dimers": False},
    }


def job(client, job_id: str) -> dict:
    return client.get(f"/jobs/{job_id}", params={"include": "epochs"}).json()


def epochs_done(client, job_id: str) -> int:
    return job(client, job_id)["progress"]["epochs_done"]


def stored_checkpoint_epoch(settings, job_id: str) -> int:
    """The epoch of the checkpoint in artifact storage: what a worker elsewhere resumes from."""
    storage = storage_from_settings(settings)
    if not storage.exists(checkpoint_pointer_key(job_id)):
        return -1
    pointer = storage.fetch(
        checkpoint_pointer_key(job_id), settings.data_dir / f"probe-{job_id}.json"
    )
    return checkpoint_epoch(Path(json.loads(pointer.read_text())["file"]))


def test_a_killed_worker_leaves_the_job_resumed_from_its_checkpoint_by_the_next_worker(
    recovery_client, start_worker, settings, train_id
) -> None:
    first = start_worker("first")
    job_id = recovery_client.post("/jobs", json=spec(train_id, EPOCHS)).json()["id"]
    wait_until(
        lambda: stored_checkpoint_epoch(settings, job_id) >= 2,
        300,
        "a stored checkpoint of epoch 2",
    )
    assert training_processes(job_id)
    first_start = job(recovery_client, job_id)["started_at"]

    first.send_signal(signal.SIGKILL)
    first.wait()

    wait_until(lambda: not training_processes(job_id), 10, "mace to die with its worker")
    assert job(recovery_client, job_id)["state"] == "running"
    # As if the next worker were on another machine: only the stored checkpoint is left.
    shutil.rmtree(settings.data_dir / "work" / job_id / "checkpoints")
    second = start_worker("second")
    done = wait_until(
        lambda: (
            (body := job(recovery_client, job_id))["state"] not in {"queued", "running"} and body
        ),
        600,
        "the resumed job to end",
    )

    assert done["state"] == "succeeded", (done["error"], second.log_path.read_text()[-3000:])
    assert done["attempts"] == 2
    # The job's start is its first run's; the resumption has its own time.
    assert done["started_at"] == first_start
    assert done["resumed_at"] is not None and done["resumed_at"] > first_start
    resumed = [
        int(match.group(1))
        for warning in done["warnings"]
        if (match := re.search(r"resumed from its checkpoint of epoch (\d+)", warning))
    ]
    assert resumed and resumed[0] >= 1, done["warnings"]
    # Epochs before the checkpoint were not trained again: each epoch appears exactly once.
    trained = [entry["epoch"] for entry in done["epochs"] if entry["epoch"] is not None]
    assert trained == list(range(EPOCHS))
    assert all(entry["seconds"] > 0 for entry in done["epochs"] if entry["epoch"] is not None)


def test_cancelling_a_running_job_stops_its_training_process(
    recovery_client, start_worker, settings, train_id
) -> None:
    start_worker("cancel")
    job_id = recovery_client.post("/jobs", json=spec(train_id, 500)).json()["id"]
    wait_until(lambda: epochs_done(recovery_client, job_id) >= 1, 300, "an epoch")
    assert training_processes(job_id)

    response = recovery_client.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 200
    wait_until(lambda: not training_processes(job_id), 30, "mace to stop after the cancel")
    cancelled = job(recovery_client, job_id)
    assert cancelled["state"] == "cancelled"
    assert cancelled["progress"]["epochs_done"] < 100
    folder = settings.data_dir / "work" / job_id
    wait_until(lambda: not folder.exists(), 30, "the cancelled job's working folder to go")
