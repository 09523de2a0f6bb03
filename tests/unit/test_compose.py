"""docker-compose.yml and the Dockerfile describe the production shape (Docker cannot run here,
so the files are parsed and checked)."""

import re

import yaml

from core.config import Settings
from tests.conftest import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def queues_of(service: dict) -> list[str]:
    option = next(arg for arg in service["command"] if arg.startswith("--queues="))
    return option.removeprefix("--queues=").split(",")


def test_every_service_of_the_production_shape_is_there_with_a_healthcheck() -> None:
    assert set(SERVICES) == {"postgres", "redis", "minio", "api", "worker-cpu", "worker-gpu"}
    for name, service in SERVICES.items():
        assert "healthcheck" in service, name


def test_workers_consume_their_queues_one_job_at_a_time() -> None:
    defaults = Settings()
    assert queues_of(SERVICES["worker-gpu"]) == [defaults.gpu_queue]
    assert queues_of(SERVICES["worker-cpu"]) == [defaults.cpu_queue]
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


def test_api_and_workers_share_postgres_redis_and_object_storage() -> None:
    for name in ("api", "worker-cpu", "worker-gpu"):
        environment = SERVICES[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert environment["BROKER_URL"].startswith("redis://redis:")
        assert environment["MLFT_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert environment["MLFT_S3_BUCKET"]
        assert set(SERVICES[name]["depends_on"]) >= {"postgres", "redis", "minio"}
    assert "/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_the_dockerfile_builds_torch_from_the_chosen_index_then_the_service() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_INDEX=", dockerfile, re.MULTILINE)
    assert '--index-url "${TORCH_INDEX}"' in dockerfile
    for folder in ("api", "core", "worker", "migrations"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert 'CMD ["mlft-server", ' in dockerfile
