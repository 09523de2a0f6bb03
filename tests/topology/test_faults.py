"""Issue 26: faults in PostgreSQL, Redis, S3 and a worker's disk, survived with nothing lost.

The topology of tests/topology (an API and two training workers as processes) on servers of its
own: a private PostgreSQL cluster and Redis that these tests restart, moto's S3 behind a link
they cut, and each worker's data folder on a small disk of its own that they fill.
"""

import io
import json
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from bench.topology import Topology, prepare_database, register_foundation
from core.artifacts.storage_keys import job_artifact_key, mace_log_key
from core.service.dispatch import WORK_KINDS
from core.service.models import JobState
from tests.topology.conftest import (
    ADMIN_TOKEN,
    JOB_TIMEOUT_S,
    LEASE_SECONDS,
    job_spec,
    project_client,
    submit,
    upload_datasets,
    wait_until,
    wait_until_ended,
    worker_running,
)
from tests.topology.servers import (
    CuttableLink,
    PrivatePostgres,
    PrivateRedis,
    ServerUnavailable,
    fill_disk,
    mount_tmpfs,
    unmount,
)

pytestmark = [
    pytest.mark.topology,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="private servers, tmpfs"),
]
WORKERS = ("worker-gpu-1", "worker-gpu-2")
# Each worker's data folder: the foundation, the datasets and a job's folder take a few MB.
DISK_MB = 128
# Shorter than the lease (LEASE_SECONDS): the training worker keeps its job.
DATABASE_OUTAGE_S = 5
# The figure: S3 away for a minute while a job uploads its artifacts.
S3_OUTAGE_S = 60
# Foundation E0s are far off these data, so validation improves every epoch and mace leaves a
# checkpoint per epoch (a resumed job restarts from it).
CHECKPOINTING = {"e0s": "foundation", "preflight": {"acknowledge": ["reference_mismatch"]}}
ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass
class Faults:
    """The topology and the servers the tests break."""

    topology: Topology
    postgres: PrivatePostgres
    redis: PrivateRedis
    s3: CuttableLink
    s3_direct_url: str
    small_disks: bool

    @property
    def database_url(self) -> str:
        return self.postgres.url("mlft")


def _private(server_class):
    try:
        server = server_class()
        server.start()
    except ServerUnavailable as error:
        pytest.skip(str(error))
    return server


@pytest.fixture(scope="module")
def faults(tmp_path_factory, demo_foundation: Path) -> Iterator[Faults]:
    postgres = _private(PrivatePostgres)
    broker = _private(PrivateRedis)
    prepare_database(postgres.url("mlft"))
    root = tmp_path_factory.mktemp("faults")
    disks = _small_disks(root)
    topology = Topology(
        root,
        database_url=postgres.url("mlft"),
        broker_url=broker.url,
        overrides={"MLFT_JOB_LEASE_SECONDS": str(LEASE_SECONDS), "MLFT_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    topology.start_s3_server()
    # Every process of the topology reaches S3 through the link; the tests read the bucket
    # directly.
    direct_url = topology.s3_endpoint_url
    link = CuttableLink(int(direct_url.rsplit(":", 1)[1]))
    link.mend()
    topology.s3_endpoint_url = link.url
    try:
        topology.start({name: ["gpu"] for name in WORKERS})
        register_foundation(topology.api_url, ADMIN_TOKEN, demo_foundation.stem, demo_foundation)
        yield Faults(topology, postgres, broker, link, direct_url, small_disks=bool(disks))
    finally:
        topology.stop()
        link.cut()
        for disk in disks:
            unmount(disk)
        broker.remove()
        postgres.remove()


def _small_disks(root: Path) -> list[Path]:
    """Each training worker's data folder on a tmpfs of its own, where mounting is allowed."""
    mounted = []
    for name in WORKERS:
        try:
            mount_tmpfs(root / name, DISK_MB)
        except ServerUnavailable:
            break
        mounted.append(root / name)
    if len(mounted) < len(WORKERS):
        for folder in mounted:
            unmount(folder)
        return []
    return mounted


@pytest.fixture(scope="module")
def researcher(faults: Faults) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=faults.topology.api_url, headers=headers, timeout=120) as admin:
        client = project_client(faults.topology.api_url, admin, "faults")
    with client:
        yield client


@pytest.fixture(scope="module")
def datasets(researcher: httpx.Client, tmp_path_factory) -> dict[str, str]:
    return upload_datasets(researcher, tmp_path_factory.mktemp("faults-data"))


@pytest.fixture(scope="module")
def bucket(faults: Faults):
    """The bucket read past the link, so that it can be checked while the link is cut."""
    return boto3.client(
        "s3",
        endpoint_url=faults.s3_direct_url,
        region_name=faults.topology.setting("MLFT_S3_REGION"),
        aws_access_key_id=faults.topology.setting("MLFT_S3_ACCESS_KEY_ID"),
        aws_secret_access_key=faults.topology.setting("MLFT_S3_SECRET_ACCESS_KEY"),
    )


def ended(client: httpx.Client, job_id: str, faults: Faults) -> dict:
    path = f"/jobs/{job_id}?include=epochs"
    return wait_until_ended(client, path, faults.topology, JOB_TIMEOUT_S)


def training(client: httpx.Client, job_id: str) -> bool:
    """The job's mace-torch process runs (the stage the faults are meant to hit)."""
    response = client.get(f"/jobs/{job_id}")
    return response.status_code == 200 and response.json()["progress"]["stage"] == "training"


def active_rows(database_url: str) -> dict[str, int]:
    """Work rows still queued or running, by kind: none once every test's work ended."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            counts = {
                kind: session.scalar(
                    select(func.count()).select_from(table).where(table.state.in_(ACTIVE_STATES))
                )
                for kind, table in WORK_KINDS.items()
            }
    finally:
        engine.dispose()
    return {kind: count for kind, count in counts.items() if count}


def test_postgres_restarted_while_a_job_trains_answers_503_then_the_job_finishes(
    faults, researcher, datasets
) -> None:
    epochs = 3
    job_id = submit(researcher, "/jobs", job_spec(datasets, epochs, **CHECKPOINTING))
    wait_until(lambda: training(researcher, job_id), JOB_TIMEOUT_S, "the job to train")

    faults.postgres.stop()
    try:
        during = [researcher.get(f"/jobs/{job_id}"), researcher.get("/jobs")]
        time.sleep(DATABASE_OUTAGE_S)
        during.append(researcher.get(f"/jobs/{job_id}"))
    finally:
        faults.postgres.start()

    for response in during:
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["code"] == "database_busy"
    wait_until(
        lambda: researcher.get(f"/jobs/{job_id}").status_code == 200, 60, "the API to recover"
    )
    done = ended(researcher, job_id, faults)
    assert done["state"] == "succeeded", done["error"]
    # Away for less than a lease: the worker kept its job and trained through the outage.
    assert done["attempts"] == 1
    trained = [entry["epoch"] for entry in done["epochs"] if entry["epoch"] is not None]
    assert trained == list(range(epochs))
    assert active_rows(faults.database_url) == {}


def queued_messages(broker_url: str, queue: str) -> int:
    with redis.Redis.from_url(broker_url) as client:
        return int(client.llen(queue))


def test_redis_restarted_with_work_queued_runs_every_queued_row_once(
    faults, researcher, datasets
) -> None:
    queue = faults.topology.setting("MLFT_GPU_QUEUE")
    busy = [submit(researcher, "/jobs", job_spec(datasets, epochs=2)) for _ in WORKERS]
    wait_until(
        lambda: all(researcher.get(f"/jobs/{j}").json()["state"] == "running" for j in busy),
        JOB_TIMEOUT_S,
        "both workers to be busy",
    )
    waiting = [submit(researcher, "/jobs", job_spec(datasets)) for _ in range(2)]
    assert queued_messages(faults.redis.url, queue) == len(waiting)

    faults.redis.stop()
    faults.redis.start()

    assert queued_messages(faults.redis.url, queue) == 0  # the restart lost every message
    for job_id in busy + waiting:
        done = ended(researcher, job_id, faults)
        assert done["state"] == "succeeded", done["error"]
        assert done["attempts"] == 1
    assert active_rows(faults.database_url) == {}


def whole(name: str, content: bytes) -> bool:
    """Whether an object is a complete file of its kind (a torch save is a zip whose directory
    comes last; JSON parses)."""
    if name.endswith((".model", ".pt")):
        return zipfile.is_zipfile(io.BytesIO(content))
    if name.endswith(".json"):
        try:
            json.loads(content)
        except ValueError:
            return False
    return True


def half_written(bucket, bucket_name: str, job_id: str, advertised: bool) -> list[str]:
    """Objects of the job's listed in the bucket that are not whole, and the model when the job
    says it is available but the bucket lacks it."""
    prefix = job_artifact_key(job_id, "")
    listed = bucket.list_objects_v2(Bucket=bucket_name, Prefix=prefix).get("Contents", [])
    keys = {entry["Key"] for entry in listed}
    broken = [
        key
        for key in keys
        if not whole(key, bucket.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    ]
    if advertised and f"{prefix}model.model" not in keys:
        broken.append("model.model (advertised, not stored)")
    return broken


def test_s3_unreachable_for_a_minute_during_upload_is_retried_and_never_half_listed(
    faults, researcher, datasets, bucket
) -> None:
    bucket_name = faults.topology.setting("MLFT_S3_BUCKET")
    job_id = submit(researcher, "/jobs", job_spec(datasets, epochs=1))
    wait_until(lambda: training(researcher, job_id), JOB_TIMEOUT_S, "the job to train")

    faults.s3.cut()
    try:
        cut_until = time.monotonic() + S3_OUTAGE_S
        while time.monotonic() < cut_until:
            job = researcher.get(f"/jobs/{job_id}").json()
            assert job["state"] == "running", job["error"]
            assert half_written(bucket, bucket_name, job_id, job["model_available"]) == []
            time.sleep(2)
    finally:
        faults.s3.mend()

    done = ended(researcher, job_id, faults)
    assert done["state"] == "succeeded", done["error"]
    assert half_written(bucket, bucket_name, job_id, advertised=True) == []
    retried = [
        process.log_path.read_text(errors="replace")
        for name, process in faults.topology.processes.items()
        if name in WORKERS
    ]
    assert any(f"jobs/{job_id}/" in log and "retrying in" in log for log in retried)
    model = researcher.get(f"/jobs/{job_id}/model")
    stored = bucket.get_object(Bucket=bucket_name, Key=f"jobs/{job_id}/model.model")
    assert model.status_code == 200 and model.content == stored["Body"].read()


def test_a_full_disk_during_training_fails_the_job_naming_the_disk_and_leaves_nothing(
    faults, researcher, datasets, bucket
) -> None:
    if not faults.small_disks:
        pytest.skip("mounting a tmpfs is not permitted here, so no worker's disk can be filled")
    bucket_name = faults.topology.setting("MLFT_S3_BUCKET")
    job_id = submit(researcher, "/jobs", job_spec(datasets, epochs=3, **CHECKPOINTING))
    wait_until(lambda: training(researcher, job_id), JOB_TIMEOUT_S, "the job to train")
    worker = faults.topology.processes[worker_running(faults.topology, job_id)]

    filler = fill_disk(worker.data_dir)
    try:
        done = ended(researcher, job_id, faults)
        job_folder = worker.data_dir / "work" / job_id
        wait_until(lambda: not job_folder.exists(), 60, "the job's folder to be removed")
    finally:
        filler.unlink()

    assert done["state"] == "failed"
    assert "disk" in done["error"] and str(worker.data_dir) in done["error"], done["error"]
    assert not done["model_available"]
    listed = bucket.list_objects_v2(Bucket=bucket_name, Prefix=job_artifact_key(job_id, ""))
    assert {entry["Key"] for entry in listed.get("Contents", [])} <= {mace_log_key(job_id)}
    assert active_rows(faults.database_url) == {}
