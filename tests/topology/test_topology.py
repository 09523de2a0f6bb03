"""Issue 20: the API and the workers share nothing but PostgreSQL, Redis and S3 (moto's server).

Each process has its own data folder; every file a researcher downloads is served by the API
from the bucket, and a job resumes on another worker from the checkpoint in the bucket.
"""

import hashlib
import json
import re
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.topology import Topology, register_foundation
from core.artifacts.storage import Storage, storage_from_settings
from core.artifacts.storage_keys import checkpoint_pointer_key, model_key
from core.config import Settings
from core.workflows.checkpoints import checkpoint_epoch
from tests.topology.conftest import (
    ADMIN_TOKEN,
    JOB_TIMEOUT_S,
    QUICK_EVALUATION,
    job_spec,
    submit,
    upload_datasets,
    wait_until,
    wait_until_ended,
    worker_running,
)

pytestmark = [
    pytest.mark.topology,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


@pytest.fixture(scope="module")
def datasets(client: httpx.Client, tmp_path_factory) -> dict[str, str]:
    return upload_datasets(client, tmp_path_factory.mktemp("topology-data"))


@pytest.fixture(scope="module")
def bucket(topology: Topology, tmp_path_factory) -> Storage:
    """The bucket as any process of the topology sees it (read here only to check it)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("bucket-reader"),
        s3_bucket=topology.setting("MLFT_S3_BUCKET"),
        s3_endpoint_url=topology.s3_endpoint_url,
        s3_region=topology.setting("MLFT_S3_REGION"),
        s3_access_key_id=topology.setting("MLFT_S3_ACCESS_KEY_ID"),
        s3_secret_access_key=topology.setting("MLFT_S3_SECRET_ACCESS_KEY"),
    )
    return storage_from_settings(settings)


SWEEP_STRATEGIES = ["naive", "freeze_readout_only"]


@pytest.fixture(scope="module")
def submitted(client, datasets) -> dict[str, str]:
    """A naive job, a two-strategy sweep and a replay-set build, submitted at once: the two
    training workers share them out."""
    return {
        "job": submit(client, "/jobs", job_spec(datasets)),
        "sweep": submit(
            client, "/sweeps", {"base": job_spec(datasets), "strategies": SWEEP_STRATEGIES}
        ),
        "replay_set": submit(
            client,
            "/replay-sets",
            {"elements": ["Cu", "Au"], "size": 6, "sources": ["dimer", "strain"], "seed": 1},
        ),
    }


@pytest.fixture(scope="module")
def naive_job(client, topology, submitted) -> dict:
    return wait_until_ended(client, f"/jobs/{submitted['job']}", topology, JOB_TIMEOUT_S)


def test_processes_share_no_folder(topology: Topology) -> None:
    folders = [p.data_dir for p in topology.processes.values() if p.data_dir is not None]
    assert len(folders) == 4
    for folder in folders:
        assert not any(other in folder.parents for other in folders if other != folder)
    environments = {
        name: (Path("/proc") / str(p.popen.pid) / "environ").read_bytes().split(b"\0")
        for name, p in topology.processes.items()
        if p.data_dir is not None
    }
    for name, environment in environments.items():
        assert f"MLFT_DATA_DIR={topology.processes[name].data_dir}".encode() in environment
        assert not any(v.startswith(b"MLFT_MODELS_DIR=") for v in environment)


def test_a_naive_job_trains_on_a_gpu_worker_and_every_download_comes_from_the_bucket(
    client, topology, naive_job, bucket, tmp_path
) -> None:
    assert naive_job["state"] == "succeeded", naive_job["error"]
    job_id = naive_job["id"]

    model = client.get(f"/jobs/{job_id}/model")
    report = client.get(f"/jobs/{job_id}/report", params={"format": "html"})
    card = client.get(f"/jobs/{job_id}/model-card")
    metrics = client.get(f"/jobs/{job_id}/metrics")
    log = client.get(f"/jobs/{job_id}/log")

    assert model.status_code == 200 and report.status_code == 200, (model.text, report.text)
    assert card.status_code == 200 and metrics.status_code == 200, (card.text, metrics.text)
    assert log.status_code == 200 and log.text, log.text
    stored = bucket.fetch(model_key(job_id), tmp_path / "stored.model").read_bytes()
    assert hashlib.sha256(model.content).digest() == hashlib.sha256(stored).digest()
    # Trained in the training worker's folder, never in the API's or the evaluation worker's.
    assert not (topology.processes["api"].data_dir / "work").exists()
    assert not (topology.processes["worker-cpu"].data_dir / "work").exists()
    assert not (topology.processes["api"].data_dir / "artifacts").exists()


def test_an_evaluation_runs_on_the_cpu_worker(client, topology, naive_job, datasets) -> None:
    evaluation_id = submit(
        client,
        "/evaluations",
        {
            "model": {"job": naive_job["id"]},
            "dataset": datasets["test"],
            "settings": QUICK_EVALUATION,
        },
    )

    evaluation = wait_until_ended(client, f"/evaluations/{evaluation_id}", topology, JOB_TIMEOUT_S)

    assert evaluation["state"] == "succeeded", evaluation["error"]
    assert evaluation["report"]
    assert client.get(f"/evaluations/{evaluation_id}/report").status_code == 200
    assert (topology.processes["worker-cpu"].data_dir / "cache").exists()


def test_a_replay_set_is_built_by_a_worker_and_stored_as_a_dataset(
    client, topology, submitted
) -> None:
    built = wait_until_ended(
        client, f"/replay-sets/{submitted['replay_set']}", topology, JOB_TIMEOUT_S
    )

    assert built["state"] == "succeeded", built["error"]
    dataset = client.get(f"/datasets/{built['dataset_id']}").json()
    assert dataset["summary"]["n_configs"] == 6


def test_a_two_strategy_sweep_succeeds(client, submitted) -> None:
    sweep_id = submitted["sweep"]
    deadline = time.monotonic() + 2 * JOB_TIMEOUT_S
    while not (sweep := client.get(f"/sweeps/{sweep_id}").json())["finished"]:
        assert time.monotonic() < deadline, sweep["jobs"]
        time.sleep(1)

    assert sweep["jobs"] == {"succeeded": 2}, sweep["table"]
    assert {row["strategy"] for row in sweep["table"]} == set(SWEEP_STRATEGIES)
    html = client.get(f"/sweeps/{sweep_id}/report", params={"format": "html"})
    assert html.status_code == 200 and "<img" in html.text


def stored_checkpoint_epoch(bucket: Storage, job_id: str, folder: Path) -> int:
    if not bucket.exists(checkpoint_pointer_key(job_id)):
        return -1
    pointer = bucket.fetch(checkpoint_pointer_key(job_id), folder / f"{job_id}.json")
    return checkpoint_epoch(Path(json.loads(pointer.read_text())["file"]))


def test_a_killed_worker_leaves_the_job_to_the_other_resumed_from_the_bucket(
    client, topology, datasets, bucket, tmp_path
) -> None:
    epochs = 3
    # Foundation E0s are far off these data: validation improves each epoch, and mace (which
    # checkpoints on improvement) leaves a checkpoint per epoch.
    job_id = submit(
        client,
        "/jobs",
        job_spec(
            datasets, epochs, e0s="foundation", preflight={"acknowledge": ["reference_mismatch"]}
        ),
    )
    wait_until(
        lambda: stored_checkpoint_epoch(bucket, job_id, tmp_path) >= 0,
        JOB_TIMEOUT_S,
        "a checkpoint in the bucket",
    )
    killed = worker_running(topology, job_id)
    assert killed is not None

    topology.kill(killed)

    done = wait_until_ended(client, f"/jobs/{job_id}?include=epochs", topology, JOB_TIMEOUT_S)
    assert done["state"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    resumed = [
        int(match.group(1))
        for warning in done["warnings"]
        if (match := re.search(r"resumed from its checkpoint of epoch (\d+)", warning))
    ]
    assert resumed, done["warnings"]
    # The other worker fetched the checkpoint from the bucket: epochs before it were not
    # trained again.
    trained = [entry["epoch"] for entry in done["epochs"] if entry["epoch"] is not None]
    assert trained == list(range(epochs))


def test_a_cpu_queue_worker_never_trains_and_a_fresh_worker_trains_the_admins_foundation(
    client, topology, datasets, demo_foundation
) -> None:
    """With no training worker left, a job waits for one while the cpu-queue worker runs what
    was submitted after it; then a worker on a new data folder, which has never seen a
    foundation file, trains from a model the admin registered on the API only."""
    for name in [n for n in topology.processes if n.startswith("worker-gpu")]:
        topology.kill(name)
    registered = register_foundation(
        topology.api_url, ADMIN_TOKEN, "lab-foundation", demo_foundation
    )
    job_id = submit(client, "/jobs", job_spec(datasets, foundation_model="lab-foundation"))
    evaluation_id = submit(
        client,
        "/evaluations",
        {
            "model": {"foundation_model": "lab-foundation"},
            "dataset": datasets["test"],
            "settings": QUICK_EVALUATION,
        },
    )
    evaluation = wait_until_ended(client, f"/evaluations/{evaluation_id}", topology, JOB_TIMEOUT_S)
    assert evaluation["state"] == "succeeded", evaluation["error"]
    assert client.get(f"/jobs/{job_id}").json()["state"] == "queued"

    fresh = topology.start_worker("worker-gpu-3", ["gpu"])

    done = wait_until_ended(client, f"/jobs/{job_id}", topology, JOB_TIMEOUT_S)
    assert done["state"] == "succeeded", done["error"]
    # The store keeps the safe form (weights and architecture), named by its sha256.
    fetched = list(fresh.data_dir.rglob(f"{registered['sha256']}.*"))
    assert fetched, "the worker trained without fetching the registered file"
