"""Status reads under a lab's dashboards (issue 26, item 3), measured with locust: `mlft-server`
as an operator starts it (one API process per core), 10,000 jobs in the database, and

1. 500 dashboards, each on its own connection, each polling one job every 2 s: an open loop of
   250 GET /jobs/{id} per second for 60 s (targets: p99 < 50 ms, no error, no connection error);
2. GET /jobs paged through all 10,000 jobs, 100 a page, one page after another (target: every
   page < 50 ms),

on PostgreSQL (Redis broker, tokens on; no Celery worker, the jobs stay queued) and on the
embedded default (SQLite, folder broker, its local worker, no tokens). The load generator runs
on the same machine as the server, as on the 2-core machine the targets were set for.

Usage: python bench/status_polling.py [--backends postgresql sqlite] [--users 500] [--period 2]
       [--seconds 60] [--jobs 10000] [--page 100] [--small] [--out docs/benchmarks.md]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.api_load import POSTGRES, descendant_pids, fresh_database  # noqa: E402
from bench.common import REPO_ROOT, demo_foundation_path, write_section  # noqa: E402
from bench.service import SERVER_VARIABLES, ApiProcess, running_api  # noqa: E402
from core.config import Settings  # noqa: E402
from core.science.spec import JobSpec  # noqa: E402
from core.science.strategies import effective_settings  # noqa: E402
from core.service.auth import create_project, issue_token  # noqa: E402
from core.service.db import migrate, session_factory  # noqa: E402
from core.service.jobs import create_job  # noqa: E402
from core.service.models import Dataset, utcnow  # noqa: E402

DASHBOARDS = REPO_ROOT / "bench" / "polling_dashboards.py"
# The benchmark's own Redis database (the tests' is BROKER_URL); emptied afterwards.
BROKER_URL = os.environ.get("MLFT_BENCH_BROKER_URL", "redis://127.0.0.1:6379/4")
INSERT_BATCH = 1000


@dataclass(frozen=True)
class Sizes:
    users: int
    period_s: float
    seconds: int
    jobs: int
    page: int


@dataclass(frozen=True)
class Backend:
    name: str  # "postgresql" or "sqlite"
    database_url: str
    data_dir: Path
    tokens: bool


def add_jobs(database_url: str, count: int, *, project: str | None) -> tuple[list[str], str]:
    """`count` queued jobs as POST /jobs leaves them (spec, effective settings, warnings), written
    straight to the database: the benchmark times reads, not 10,000 submissions. Returns the job
    ids and a project token ("" without a project: the embedded default's single user)."""
    sessions = session_factory(database_url)
    ids: list[str] = []
    with sessions() as session:
        token = ""
        owner: dict[str, str] = {}
        if project is not None:
            created = create_project(session, project)
            _, token = issue_token(session, created.id, "dashboards")
            owner = {"project_id": created.id}
        dataset = Dataset(name="train.extxyz", storage_key="-", sha256="0" * 64, **owner)
        dataset.summary = {"n_configs": 100, "elements": ["Cu"], "labels": ["energy", "forces"]}
        session.add(dataset)
        session.flush()
        spec = JobSpec(train_dataset=dataset.id, hyperparameters={"max_num_epochs": 50})
        stored = spec.model_dump(mode="json")
        effective = effective_settings(spec)
        for index in range(count):
            job = create_job(session, stored, dataset.id, effective_hyperparameters=effective)
            # Sent, as far as the embedded worker's sweeper knows: it must not start them.
            job.enqueued_at = utcnow()
            if owner:
                job.project_id = owner["project_id"]
            ids.append(job.id)
            if (index + 1) % INSERT_BATCH == 0:
                session.commit()
        session.commit()
    sessions.kw["bind"].dispose()
    return ids, token


@contextmanager
def backend(name: str, folder: Path) -> Iterator[Backend]:
    data_dir = folder / f"var-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    if name == "postgresql":
        with fresh_database(POSTGRES) as url:
            yield Backend(name, url, data_dir, tokens=True)
        return
    url = f"sqlite:///{(data_dir / 'mlft.sqlite').resolve()}"
    migrate(url)
    yield Backend(name, url, data_dir, tokens=False)


def server_environment(target: Backend, token_set: bool) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    env = {key: value for key, value in env.items() if key != "MLFT_API_WORKERS"}
    env["MLFT_DATA_DIR"] = str(target.data_dir)
    env["MLFT_MODELS_DIR"] = str(demo_foundation_path().parent)
    if target.name == "postgresql":
        env |= {"DATABASE_URL": target.database_url, "BROKER_URL": BROKER_URL}
    if token_set:
        env["MLFT_ADMIN_TOKEN"] = "bench-admin-token"
    return env


def every_process_started(workers: int):
    def ready(api: ApiProcess) -> bool:
        log = api.log_path.read_text(errors="replace")
        return log.count("Application startup complete") >= workers

    return ready


def run_dashboards(url: str, ids_file: Path, token: str, sizes: Sizes, out: Path) -> Path:
    """locust, headless, in its own process (gevent patches what it imports); its CSV prefix."""
    prefix = out / "locust"
    spawn_rate = max(1, sizes.users // 5)
    ramp_s = sizes.users / spawn_rate
    env = os.environ | {
        "MLFT_BENCH_JOB_IDS": str(ids_file),
        "MLFT_BENCH_TOKEN": token,
        "MLFT_BENCH_PERIOD_S": str(sizes.period_s),
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(DASHBOARDS), "--headless",
        "--host", url, "--users", str(sizes.users), "--spawn-rate", str(spawn_rate),
        # Statistics start over once every dashboard runs: the ramp is not measured.
        "--reset-stats", "--run-time", f"{int(ramp_s + sizes.seconds)}s",
        "--stop-timeout", "5", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    subprocess.run(command, env=env, check=False, timeout=ramp_s + sizes.seconds + 120)
    return prefix


@dataclass(frozen=True)
class PollingResult:
    requests: int
    failures: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    failure_kinds: str


def read_locust(prefix: Path) -> PollingResult:
    with Path(f"{prefix}_stats.csv").open() as stream:
        row = next(r for r in csv.DictReader(stream) if r["Name"] == "Aggregated")
    with Path(f"{prefix}_failures.csv").open() as stream:
        kinds = [f"{r['Error']}: {r['Occurrences']}" for r in csv.DictReader(stream)]
    return PollingResult(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        requests_per_second=float(row["Requests/s"]),
        p50_ms=float(row["50%"]),
        p99_ms=float(row["99%"]),
        max_ms=float(row["Max Response Time"]),
        failure_kinds="; ".join(kinds) or "none",
    )


def page_through(url: str, token: str, total: int, page: int) -> np.ndarray:
    """Seconds per GET /jobs page, one page after another, until every job was listed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    seconds, listed = [], 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        client.get("/jobs", params={"limit": page}).raise_for_status()  # connection opened
        for offset in range(0, total, page):
            start = time.perf_counter()
            response = client.get("/jobs", params={"limit": page, "offset": offset})
            seconds.append(time.perf_counter() - start)
            response.raise_for_status()
            listed += len(response.json()["data"])
    if listed != total:
        raise RuntimeError(f"GET /jobs listed {listed} jobs of {total}")
    return np.array(seconds)


def measure(name: str, sizes: Sizes, folder: Path) -> list[tuple[str, str]]:
    load = f"{os.getloadavg()[0]:.1f}"
    with backend(name, folder) as target:
        ids, token = add_jobs(
            target.database_url, sizes.jobs, project="bench" if target.tokens else None
        )
        ids_file = folder / f"{name}-job-ids.txt"
        ids_file.write_text("\n".join(ids))
        env = server_environment(target, target.tokens)
        workers = Settings().resolved_api_workers
        ready = every_process_started(workers)
        with running_api(
            ["-m", "api"], env, target.data_dir / "api.log", ready=ready, timeout_s=600
        ) as api:
            # The embedded worker (and every API process) imports torch as it starts: let the
            # machine settle before measuring.
            time.sleep(10 if name == "sqlite" else 2)
            processes = len(descendant_pids(api.popen.pid))
            polling = None
            if sizes.users:
                prefix = run_dashboards(api.url, ids_file, token, sizes, folder / name)
                polling = read_locust(prefix)
            pages = page_through(api.url, token, sizes.jobs, sizes.page)
    server = (
        f"mlft-server, {workers} API processes; PostgreSQL, Redis, tokens on"
        if name == "postgresql"
        else f"mlft-server, {workers} API processes; embedded default (SQLite, folder broker, "
        "local worker), no tokens"
    )
    rows = [
        (f"{name}: server", server),
        (f"{name}: processes under mlft-server", f"{processes}"),
        (f"{name}: load average before", load),
    ]
    paging = (
        f"{name}: GET /jobs pages of {sizes.page} over {sizes.jobs} jobs: p50 / p99 / max (ms)",
        " / ".join(f"{np.percentile(pages, q) * 1e3:.1f}" for q in (50, 99, 100)),
    )
    if polling is None:  # --users 0: the pages alone
        return [*rows, paging]
    dashboards = f"{sizes.users} locust users, one poll each every {sizes.period_s:g} s"
    return [
        *rows,
        (f"{name}: GET /jobs/{{id}} load", f"{dashboards}, {sizes.seconds} s measured"),
        (
            f"{name}: GET /jobs/{{id}} requests / failures",
            f"{polling.requests} / {polling.failures}",
        ),
        (f"{name}: GET /jobs/{{id}} failures by kind", polling.failure_kinds),
        (f"{name}: GET /jobs/{{id}} requests/s", f"{polling.requests_per_second:.1f}"),
        (
            f"{name}: GET /jobs/{{id}} p50 / p99 / max (ms)",
            f"{polling.p50_ms:.0f} / {polling.p99_ms:.0f} / {polling.max_ms:.0f}",
        ),
        paging,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--users", type=int, default=500, help="0: GET /jobs pages only")
    parser.add_argument("--period", type=float, default=2.0)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--small", action="store_true", help="20 users for 5 s, 300 jobs (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = (
        Sizes(users=20, period_s=1.0, seconds=5, jobs=300, page=100)
        if args.small
        else Sizes(args.users, args.period, args.seconds, args.jobs, args.page)
    )
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mlft-polling-") as tmp:
        for name in args.backends:
            rows += measure(name, sizes, Path(tmp))
    for name, value in rows:
        print(f"{name:60s} {value}")
    if args.out is not None:
        backends = " ".join(args.backends)
        write_section(
            args.out,
            "Status polling under dashboards: mlft-server, locust (issue 26)",
            rows,
            command=f"python bench/status_polling.py --backends {backends} --users {sizes.users} "
            f"--period {sizes.period_s:g} --seconds {sizes.seconds} --jobs {sizes.jobs} "
            f"--page {sizes.page} --out {args.out}",
        )


if __name__ == "__main__":
    main()
