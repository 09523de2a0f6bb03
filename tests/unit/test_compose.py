"""docker-compose.yml and the Dockerfile describe the production topology, the one
bench/topology.py runs locally (tests/topology) from the same mlft.env (Docker cannot run here,
so the files are parsed and checked)."""

import re
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from bench.topology import ADDRESSES, ENV_FILE, Topology, read_env_file
from core.config import Settings
from tests.conftest import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MLFT_SERVICES = ("api", "worker-cpu", "worker-gpu")
SHARED = read_env_file()


def queues_of(service: dict) -> list[str]:
    option = next(arg for arg in service["command"] if arg.startswith("--queues="))
    return option.removeprefix("--queues=").split(",")


def test_every_service_of_the_production_shape_is_there_with_a_healthcheck() -> None:
    assert set(SERVICES) == {"postgres", "redis", "minio", "api", "worker-cpu", "worker-gpu"}
    for name, service in SERVICES.items():
        assert "healthcheck" in service, name


def test_workers_consume_their_queues_one_job_at_a_time() -> None:
    assert queues_of(SERVICES["worker-gpu"]) == [SHARED["MLFT_GPU_QUEUE"]]
    assert queues_of(SERVICES["worker-cpu"]) == [SHARED["MLFT_CPU_QUEUE"]]
    for name in ("worker-cpu", "worker-gpu"):
        assert "--concurrency=1" in SERVICES[name]["command"]
        assert SERVICES[name]["command"][:4] == ["celery", "-A", "worker.celery_app", "worker"]


def test_the_gpu_worker_reserves_one_nvidia_gpu_and_trains_on_cuda() -> None:
    worker = SERVICES["worker-gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["count"] == 1
    assert "gpu" in device["capabilities"]
    assert worker["environment"]["MLFT_DEVICE"] == "cuda"
    assert "cu" in worker["build"]["args"]["TORCH_INDEX"].rsplit("/", 1)[-1]
    assert SERVICES["api"]["build"]["args"]["TORCH_INDEX"].endswith("/cpu")


def test_every_mlft_process_reads_the_one_env_file_and_sets_almost_nothing_itself() -> None:
    for name in MLFT_SERVICES:
        assert SERVICES[name]["env_file"] == ENV_FILE.name, name
    assert SERVICES["worker-gpu"]["environment"] == {"MLFT_DEVICE": "cuda"}
    # The admin token is passed through from the shell, never written in a file.
    assert SERVICES["api"]["environment"] == ["MLFT_ADMIN_TOKEN"]
    assert "environment" not in SERVICES["worker-cpu"]


def test_api_and_workers_share_postgres_redis_and_object_storage_and_no_folder() -> None:
    database = make_url(SHARED["DATABASE_URL"])
    postgres = SERVICES["postgres"]["environment"]
    assert database.drivername == "postgresql+psycopg" and database.host == "postgres"
    assert (database.username, database.password, database.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert SHARED["BROKER_URL"].startswith("redis://redis:")
    assert SHARED["MLFT_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert SHARED["MLFT_S3_BUCKET"]
    assert SERVICES["minio"]["env_file"] == ENV_FILE.name
    assert SHARED["MINIO_ROOT_USER"] == SHARED["MLFT_S3_ACCESS_KEY_ID"]
    assert SHARED["MINIO_ROOT_PASSWORD"] == SHARED["MLFT_S3_SECRET_ACCESS_KEY"]
    for name in MLFT_SERVICES:
        assert set(SERVICES[name]["depends_on"]) >= {"postgres", "redis", "minio"}
        assert "volumes" not in SERVICES[name], f"{name} mounts a folder"
    assert "/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_the_env_file_names_only_settings_mlft_reads_or_minio_needs() -> None:
    fields = {f"MLFT_{name.upper()}" for name in Settings.model_fields}
    known = fields | {"DATABASE_URL", "BROKER_URL", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    assert set(SHARED) <= known, set(SHARED) - known


def test_the_local_topology_uses_the_env_file_with_only_addresses_and_folder_replaced(
    tmp_path: Path,
) -> None:
    topology = Topology(
        tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/mlft_local",
        broker_url="redis://127.0.0.1:6379/9",
        s3_endpoint_url="http://127.0.0.1:5000",
    )

    environment = topology.environment(tmp_path / "worker")

    replaced = {key for key in SHARED if environment[key] != SHARED[key]}
    assert replaced == {*ADDRESSES, "MLFT_DATA_DIR"}
    assert environment["MLFT_DATA_DIR"] == str(tmp_path / "worker")
    assert not {key for key in environment if key.startswith("MLFT_")} - set(SHARED)


def test_the_dockerfile_builds_torch_from_the_chosen_index_then_the_service() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_INDEX=", dockerfile, re.MULTILINE)
    assert '--index-url "${TORCH_INDEX}"' in dockerfile
    for folder in ("api", "core", "worker", "migrations"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert 'CMD ["mlft-server", ' in dockerfile
    # Each container's own folder; no models folder to share between them.
    assert "MLFT_DATA_DIR=/data" in dockerfile and "/models" not in dockerfile
