"""API throughput on loopback against PostgreSQL and Redis, auth on: job creation under
concurrent requests, status reads by 500 concurrent clients (issue 17: no 5xx, requests wait or
get 503/429 with Retry-After), then one large dataset upload (validated and stored) and the
server's memory.

The API runs as a real uvicorn process with its own fresh database and an admin token; every
request carries a project token. No Celery worker runs: the jobs stay queued, are cancelled at
the end, and the benchmark's Redis database is emptied.

Usage: python bench/api_load.py [--jobs 1000] [--reads 5000] [--concurrency 16] [--clients 500]
       [--upload-mb 100] [--small] [--out docs/benchmarks.md]
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.common import demo_foundation_path, write_section  # noqa: E402
from bench.service import SERVER_VARIABLES, ApiProcess, running_api  # noqa: E402
from core.config import Settings  # noqa: E402
from core.service.db import migrate  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
BROKER_URL = "redis://127.0.0.1:6379/14"
ADMIN_TOKEN = "bench-admin-token"
UVICORN_WORKERS = 2
# Each phase is bounded, so a stuck server fails the benchmark instead of hanging it.
PHASE_TIMEOUT_S = 300.0
MB = 1e6
# Each uvicorn worker loads the foundation on its first job, to learn its elements; these many
# sequential requests per worker on fresh connections reach every worker before the measurement.
WARM_UP_PER_WORKER = 8


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict | None = None


@dataclass(frozen=True)
class LoadResult:
    latencies: np.ndarray  # s, one per request
    seconds: float  # wall time of the whole phase

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1e3


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A database of its own, migrated, dropped afterwards; the pid keeps concurrent runs apart."""
    url = f"{server}/mlft_bench_{os.getpid()}"
    name = make_url(url).database
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_version(server: str) -> str:
    engine = create_engine(f"{server}/postgres")
    with engine.connect() as connection:
        version = connection.execute(text("SHOW server_version")).scalar_one()
    engine.dispose()
    return str(version).split()[0]


@contextmanager
def api_server(database_url: str, data_dir: Path, models_dir: Path) -> Iterator[ApiProcess]:
    """uvicorn as an operator starts it, on loopback; yields once every worker has started."""
    env = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    env |= {
        "DATABASE_URL": database_url,
        "BROKER_URL": BROKER_URL,
        "MLFT_DATA_DIR": str(data_dir),
        "MLFT_MODELS_DIR": str(models_dir),
        "MLFT_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "api.log"
    command = ["-m", "uvicorn", "api.app:create_app", "--factory"]
    command += ["--workers", str(UVICORN_WORKERS)]
    try:
        # Generous: on a shared, loaded machine two workers importing torch take minutes.
        with running_api(command, env, log_path, ready=_every_worker_started, timeout_s=600) as api:
            yield api
    finally:
        # The data folder goes; the server's log stays for whoever reads the errors it counts.
        shutil.copy(log_path, Path(tempfile.gettempdir()) / "mlft-api-load-server.log")


def _every_worker_started(api: ApiProcess) -> bool:
    # /healthz answers as soon as one worker is up; measuring then would time a single worker
    # and the other one's start-up. Each worker logs this line once its lifespan has run.
    log = api.log_path.read_text(errors="replace")
    return log.count("Application startup complete") >= UVICORN_WORKERS


def descendant_pids(pid: int) -> list[int]:
    """Every process below pid, from /proc (Linux), since uvicorn's workers are its children."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may hold spaces; the parent pid follows the state.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far; 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    # An exiting process (a zombie) has already lost its memory lines.
    kib = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(kib[0]) * 1024 / MB if kib else 0.0


def server_peak_rss_mb(server: ApiProcess) -> float:
    """The largest peak over uvicorn's processes: a request is served by one worker alone."""
    root = server.popen.pid
    return max(peak_rss_mb(pid) for pid in [root, *descendant_pids(root)])


def write_labelled_extxyz(path: Path, target_bytes: int, *, atoms: int = 64, seed: int = 0) -> None:
    """Random H/C/N/O configurations that pass validation: jittered grid points stay at least
    1.1 Å apart; energies and forces are random numbers (only their format matters here)."""
    rng = np.random.default_rng(seed)
    side = round(atoms ** (1 / 3))
    axis = np.arange(side) * 1.6
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    symbols = np.array(["H", "C", "N", "O"])
    written = 0
    with path.open("w") as out:
        while written < target_bytes:
            positions = grid + rng.uniform(-0.25, 0.25, grid.shape)
            rows = np.column_stack([positions, rng.normal(0.0, 0.5, grid.shape)])
            species = rng.choice(symbols, len(grid))
            frame = (
                f"{len(grid)}\nProperties=species:S:1:pos:R:3:forces:R:3 "
                f'energy={-4.0 * len(grid) + rng.normal():.8f} pbc="F F F"\n'
                + "".join(
                    f"{s} {' '.join(f'{v:.8f}' for v in row)}\n"
                    for s, row in zip(species, rows, strict=True)
                )
            )
            out.write(frame)
            written += len(frame)


def project_headers(base_url: str) -> dict[str, str]:
    """A project and its token, made with the admin token; the headers every request sends."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    project = httpx.post(f"{base_url}/projects", json={"name": "bench"}, headers=admin)
    project.raise_for_status()
    token = httpx.post(
        f"{base_url}/projects/{project.json()['id']}/tokens", json={"name": "load"}, headers=admin
    )
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['token']}"}


def upload(base_url: str, path: Path, headers: dict[str, str]) -> tuple[dict, float]:
    start = time.perf_counter()
    with path.open("rb") as stream:
        response = httpx.post(
            f"{base_url}/datasets",
            files={"file": (path.name, stream)},
            headers=headers,
            timeout=PHASE_TIMEOUT_S,
        )
    seconds = time.perf_counter() - start
    if response.status_code != 201:
        raise RuntimeError(f"upload of {path.name} failed: {response.text[:500]}")
    return response.json(), seconds


# (latency, response); for a request that got no answer, the client's error (ReadTimeout, ...).
Timed = tuple[float, httpx.Response | str]
# Raised when the server closed a keep-alive connection (idle for uvicorn's 5 s) just as the
# client sent on it; the request never reached the application.
STALE_CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)
retried_on_stale_connection = Counter[str]()


async def send(client: httpx.AsyncClient, request: Request) -> httpx.Response:
    """One request; a GET is sent again once on a stale connection, as HTTP clients such as
    urllib3 do for idempotent requests."""
    try:
        return await client.request(request.method, request.path, json=request.body)
    except STALE_CONNECTION_ERRORS as error:
        if request.method != "GET":
            raise
        retried_on_stale_connection[type(error).__name__] += 1
        return await client.request(request.method, request.path, json=request.body)


async def _drive(
    base_url: str, requests: list[Request], concurrency: int, headers: dict[str, str]
) -> list[Timed]:
    """`concurrency` clients, each sending its next request once its last one is answered;
    returns (latency, response) pairs in order."""
    results: dict[int, Timed] = {}
    pending = iter(enumerate(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for index, request in pending:
            start = time.perf_counter()
            response: httpx.Response | str
            try:
                response = await send(client, request)
            except httpx.HTTPError as error:
                response = type(error).__name__
            results[index] = (time.perf_counter() - start, response)

    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, headers=headers, timeout=PHASE_TIMEOUT_S
    ) as client:
        clients = [client_loop(client) for _ in range(concurrency)]
        await asyncio.wait_for(asyncio.gather(*clients), PHASE_TIMEOUT_S)
    return [results[index] for index in range(len(requests))]


def load(
    base_url: str, requests: list[Request], concurrency: int, headers: dict[str, str]
) -> tuple[LoadResult, list[dict]]:
    """Run one phase; any failed request fails the benchmark, with the server's answer."""
    result, results = load_tolerant(base_url, requests, concurrency, headers)
    for request, (_, response) in zip(requests, results, strict=True):
        if not isinstance(response, httpx.Response):
            raise RuntimeError(f"{request.method} {request.path}: no answer, {response}")
        if not response.is_success:
            raise RuntimeError(
                f"{request.method} {request.path}: {response.status_code} {response.text[:500]}"
            )
    return result, [response.json() for _, response in results]


def load_tolerant(
    base_url: str, requests: list[Request], concurrency: int, headers: dict[str, str]
) -> tuple[LoadResult, list[Timed]]:
    """Run one phase and keep every outcome, answered or not."""
    start = time.perf_counter()
    results = asyncio.run(_drive(base_url, requests, concurrency, headers))
    seconds = time.perf_counter() - start
    latencies = np.array([latency for latency, _ in results])
    return LoadResult(latencies, seconds), results


@dataclass(frozen=True)
class Outcomes:
    ok: int  # 2xx
    shed: int  # 429 or 503 with Retry-After: come back later, as the service may answer
    errors: int  # any other answer (5xx among them), or none
    error_kinds: str  # "500: 3, ReadError: 1"; "none" without errors

    @classmethod
    def of(cls, results: list[Timed]) -> "Outcomes":
        ok = shed = 0
        kinds: Counter[str] = Counter()
        for _, response in results:
            if isinstance(response, httpx.Response) and response.is_success:
                ok += 1
            elif (
                isinstance(response, httpx.Response)
                and response.status_code in (429, 503)
                and "retry-after" in response.headers
            ):
                shed += 1
            elif isinstance(response, httpx.Response):
                kinds[str(response.status_code)] += 1
            else:
                kinds[response or "no answer"] += 1
        described = ", ".join(f"{kind}: {count}" for kind, count in kinds.most_common())
        return cls(ok, shed, sum(kinds.values()), described or "none")


def job_requests(dataset_id: str, count: int) -> list[Request]:
    # The bench measures the API: the data's E0 reference, which the submission checks, is not
    # the point (acknowledged, as a user who has looked at the preflight would).
    body = {
        "train_dataset": dataset_id,
        "hyperparameters": {"max_num_epochs": 1},
        "preflight": {"acknowledge": ["reference_mismatch"]},
    }
    return [Request("POST", "/jobs", body)] * count


def empty_broker() -> None:
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    client.close()


@dataclass(frozen=True)
class Sizes:
    jobs: int
    reads: int
    concurrency: int  # of the job-creation phase
    clients: int  # concurrent clients of the status-read phase
    upload_mb: float


def latency_rows(endpoint: str, result: LoadResult) -> list[tuple[str, str]]:
    return [
        (f"{endpoint}: requests/s", f"{result.requests_per_second:.0f}"),
        (
            f"{endpoint}: p50 / p99 latency (ms)",
            f"{result.percentile_ms(50):.1f} / {result.percentile_ms(99):.1f}",
        ),
    ]


def warm_up(base: str, dataset_id: str, headers: dict[str, str]) -> list[str]:
    """Sequential job requests, one connection each; returns the ids of the jobs created."""
    # Not concurrent: two first requests in one worker load the foundation in two threads at
    # once, and torch.load of a mace model is not thread-safe (torch.fx asserts).
    ids = []
    for request in job_requests(dataset_id, WARM_UP_PER_WORKER * UVICORN_WORKERS):
        response = httpx.post(
            f"{base}{request.path}", json=request.body, headers=headers, timeout=60
        )
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def measure_jobs(
    base: str, dataset_id: str, sizes: Sizes, headers: dict[str, str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Create jobs, then read their status; returns the rows and every job id created."""
    warm = warm_up(base, dataset_id, headers)
    creation, jobs = load(base, job_requests(dataset_id, sizes.jobs), sizes.concurrency, headers)
    ids = warm + [job["id"] for job in jobs]
    reads = [Request("GET", f"/jobs/{ids[i % len(ids)]}") for i in range(sizes.reads)]
    retried_on_stale_connection.clear()
    reading, results = load_tolerant(base, reads, sizes.clients, headers)
    outcomes = Outcomes.of(results)
    retried = sum(retried_on_stale_connection.values())
    rows = [
        ("client", "httpx, asyncio, loopback; every request with a project token"),
        ("POST /jobs: concurrent requests", f"{sizes.concurrency}"),
        ("POST /jobs: requests", f"{sizes.jobs} (after {len(warm)} sequential warm-up)"),
        *latency_rows("POST /jobs", creation),
        ("GET /jobs/{id}: concurrent clients", f"{sizes.clients}"),
        ("GET /jobs/{id}: requests", f"{sizes.reads}"),
        (
            "GET /jobs/{id}: answered 2xx / 503 or 429 with Retry-After / errors (5xx, none)",
            f"{outcomes.ok} / {outcomes.shed} / {outcomes.errors}",
        ),
        ("GET /jobs/{id}: errors by kind", outcomes.error_kinds),
        ("GET /jobs/{id}: sent again after a stale keep-alive connection", f"{retried}"),
        *latency_rows("GET /jobs/{id}", reading),
    ]
    return rows, ids


def measure_upload(
    server: ApiProcess, path: Path, headers: dict[str, str]
) -> list[tuple[str, str]]:
    size = path.stat().st_size / MB
    rss_before = server_peak_rss_mb(server)
    dataset, seconds = upload(server.url, path, headers)
    rss_after = server_peak_rss_mb(server)
    summary = dataset["summary"]
    return [
        (
            "upload: size (MB) / configurations / atoms",
            f"{size:.1f} / {summary['n_configs']} / {summary['n_atoms']}",
        ),
        ("upload + validation + storage (s)", f"{seconds:.1f}"),
        ("upload + validation + storage (MB/s)", f"{size / seconds:.1f}"),
        ("server peak RSS before / after upload (MB)", f"{rss_before:.0f} / {rss_after:.0f}"),
    ]


def cancel_all(base: str, ids: list[str], concurrency: int, headers: dict[str, str]) -> None:
    cancels = [Request("POST", f"/jobs/{i}/cancel") for i in ids]
    _, jobs = load(base, cancels, concurrency, headers)
    left = [job["id"] for job in jobs if job["state"] != "cancelled"]
    if left:
        raise RuntimeError(f"{len(left)} jobs were not cancelled, e.g. {left[0]}")


def measure(sizes: Sizes, folder: Path) -> list[tuple[str, str]]:
    # Client and server share the CPU with whatever else runs; the load says how much that was.
    load = f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    train = folder / "train.extxyz"
    write_labelled_extxyz(train, 50_000, seed=1)
    large = folder / "large.extxyz"
    write_labelled_extxyz(large, int(sizes.upload_mb * MB), seed=2)
    models_dir = demo_foundation_path().parent
    with fresh_database(POSTGRES) as url, api_server(url, folder / "var", models_dir) as server:
        try:
            headers = project_headers(server.url)
            dataset, _ = upload(server.url, train, headers)
            job_rows, ids = measure_jobs(server.url, dataset["id"], sizes, headers)
            upload_rows = measure_upload(server, large, headers)
            cancel_all(server.url, ids, sizes.concurrency, headers)
        finally:
            empty_broker()
    limits = Settings().pool_limits
    pool = f"{limits.size}+{limits.max_overflow} (timeout {limits.timeout:g} s)"
    server_row = (
        "server",
        f"uvicorn, {UVICORN_WORKERS} workers, auth on, database pool {pool} per worker; "
        f"PostgreSQL {postgres_version(POSTGRES)}; Redis broker, no Celery worker",
    )
    return [server_row, ("load average when started", load), *job_rows, *upload_rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--upload-mb", type=float, default=100.0)
    parser.add_argument("--small", action="store_true", help="a few requests, 2 MB (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = (
        Sizes(jobs=48, reads=200, concurrency=16, clients=50, upload_mb=2.0)
        if args.small
        else Sizes(args.jobs, args.reads, args.concurrency, args.clients, args.upload_mb)
    )
    with tempfile.TemporaryDirectory(prefix="mlft-bench-") as tmp:
        rows = measure(sizes, Path(tmp))
    for name, value in rows:
        print(f"{name:44s} {value}")
    if args.out is not None:
        write_section(
            args.out,
            "API load: job requests and dataset upload on PostgreSQL",
            rows,
            command=f"python bench/api_load.py --jobs {sizes.jobs} --reads {sizes.reads} "
            f"--concurrency {sizes.concurrency} --clients {sizes.clients} "
            f"--upload-mb {sizes.upload_mb:g} --out {args.out}",
        )


if __name__ == "__main__":
    main()
