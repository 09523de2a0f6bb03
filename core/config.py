"""All settings of the service in one pydantic-settings object, read from `MLFT_*` variables."""

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class PoolLimits:
    """Connections one process keeps to the database server (Settings.db_pool_*)."""

    size: int = 10
    max_overflow: int = 20
    timeout: float = 10.0  # seconds a caller waits for a free connection

    @property
    def capacity(self) -> int:
        return self.size + self.max_overflow


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLFT_", extra="ignore")

    # Where datasets, models and job working folders live when no object storage is configured.
    data_dir: Path = Path("var")
    # Unset means the embedded default: SQLite in data_dir and a filesystem broker, no servers.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MLFT_DATABASE_URL")
    )
    broker_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BROKER_URL", "MLFT_BROKER_URL")
    )
    # Folder of `<name>.model` files the foundation registry reads when nothing can be downloaded.
    models_dir: Path | None = None
    # No downloads: a published foundation is refused at submission unless mace's cache or
    # models_dir holds it. Online, its URL is probed (this timeout) when it is not cached.
    offline: bool = False
    foundation_probe_timeout_s: float = 3.0
    # The sandbox that reads a model file at registration (core/registry/model_sandbox.py): its
    # address-space limit and CPU time. A 100 MB MACE needs about 2 GiB to read and convert.
    model_sandbox_memory_mb: int = 6144
    model_sandbox_cpu_s: int = 300
    # Device mace-torch trains on: "cpu" or "cuda".
    device: str = "cpu"
    # In the embedded default the API starts a local Celery worker process beside itself.
    start_embedded_worker: bool = True
    # First start of the embedded service: the API trains the demo foundation in the background
    # when its file is missing (listed as building until then).
    build_demo_foundation: bool = True
    # Upper bound on an uploaded dataset, in bytes (also on what a gzip upload unpacks to).
    max_upload_bytes: int = 512 * 1024 * 1024
    # Celery queues: training needs a GPU worker, evaluations run on CPU workers.
    gpu_queue: str = "gpu"
    cpu_queue: str = "cpu"
    # A running job's worker renews its lease every third of this; a job whose lease expired
    # lost its worker and is re-queued, resuming from its last mace checkpoint.
    job_lease_seconds: float = 60.0
    # Predictions, evaluation, preflight and the cost probe put at most this many edges
    # (neighbour pairs within the model's r_max) in one forward pass; memory grows with edges,
    # not configurations. 30k edges of a MACE-MP-0-small-sized model take well under 1 GB in
    # float64; a single structure with more edges still runs, alone.
    # On a GPU, unset, each job plans its budget from the device's free memory and the memory
    # one edge costs (core/science/edge_budget.py); setting it fixes the budget there too.
    max_edges_per_batch: int = 30_000
    # Jobs one worker runs at once (Celery prefork children): on a GPU, each is admitted when
    # its predicted peak memory fits beside the others' (core/workflows/gpu_share.py).
    gpu_jobs_per_worker: int = Field(default=1, ge=1, le=64)
    # Runs of a job (evaluation, replay-set build) whose worker died; after the last one it
    # fails with the reason.
    max_attempts: int = 3
    # A queued row whose task has not reached the broker after this long is sent by the worker's
    # sweeper (core/service/dispatch.py); younger ones may still be on their way from the API.
    dispatch_grace_seconds: float = 30.0
    # Database connections per process: pool_size kept open, up to max_overflow more under load.
    # A request that waits db_pool_timeout seconds for one gets 503 with Retry-After, never 500.
    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_pool_timeout: float = 10.0
    # At submission, e0s='foundation'|'estimated' jobs with at most this many training atoms are
    # checked for the E0 reference mismatch preflight would block on (0: never; the foundation's
    # energies are computed once and cached for the worker).
    submission_check_max_atoms: int = 2_000
    # A running job's last log lines live in the database for its live log; once the job (or
    # evaluation, or replay-set build) ended this long ago, the worker's sweep deletes them (the
    # whole log is an artifact by then).
    log_lines_retention_seconds: float = Field(default=24 * 3600.0, ge=0)
    # Progress inside a long stage (MD steps) is written to the job's row at most this often.
    progress_interval_s: float = 2.0
    # Unset (the embedded default): no tokens, one implicit project. Set: every request needs a
    # bearer token; this one manages projects and foundation models, project tokens the rest.
    admin_token: SecretStr | None = None
    # A project token found valid is trusted this many seconds without a database lookup by the
    # API process that checked it; a revoked one stops working there at once, and in other API
    # processes within this time (0: look every token up on every request).
    token_cache_seconds: float = 5.0
    # With tokens on, GET /metrics takes the admin token or this one (for a Prometheus scraper
    # that should hold no admin rights).
    metrics_token: SecretStr | None = None
    # S3-compatible object storage for artifacts (AWS S3, MinIO, Ceph), shared by workers on
    # other machines; unset bucket means the local folder data_dir/artifacts. Credentials may
    # also come from the usual AWS variables or instance roles.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    # A write to S3 (a model, a checkpoint, an upload) that cannot reach the server is tried
    # again, with pauses growing from 1 s to 15 s, for this long before the work fails; a read
    # fails at once (the API answers 503).
    s3_write_retry_seconds: float = Field(default=300.0, ge=0)
    # MLflow tracking server (or a file:/sqlite: store) every job that ends is logged to, as a
    # run in this experiment; sweeps as parent runs (docs/runs-and-mlflow.md). Needs the mlflow
    # extra. Unset: nothing is logged.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "mlft"
    # Each request to the tracking server: its timeout and retries (mlflow's own defaults retry
    # for minutes while a worker waits).
    mlflow_request_timeout_s: float = 10.0
    mlflow_request_retries: int = 2
    # Browser origins allowed to call the API (CORS), as JSON: '["https://lab.example.org"]'.
    cors_origins: list[str] = []
    # API processes `mlft-server` runs (uvicorn workers sharing one port); unset: one per core
    # this process may run on. One process serves requests on one core: Python runs one thread
    # at a time, and a status read is CPU-bound (routing, validation, JSON), not I/O-bound.
    api_workers: int | None = Field(default=None, ge=1, le=256)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mlft.sqlite').resolve()}"

    @property
    def pool_limits(self) -> PoolLimits:
        return PoolLimits(self.db_pool_size, self.db_max_overflow, self.db_pool_timeout)

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def resolved_api_workers(self) -> int:
        return self.api_workers or cores_available()

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "foundations"


def cores_available() -> int:
    """Cores this process may run on (a container's or taskset's share, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@lru_cache
def get_settings() -> Settings:
    return Settings()
