"""The production topology on one machine, without docker: one API (uvicorn) and Celery workers,
each a separate process with its own data folder, sharing nothing but PostgreSQL, Redis and an
S3 server (moto's, started here, unless --s3-endpoint-url names one, e.g. MinIO).

Every process gets mlft.env, the file docker-compose.yml gives its services, with the service
addresses pointed at this machine. tests/topology/ runs its tests in this topology.

Usage (PostgreSQL and Redis running; the database is created when missing):

    python -m bench.topology [--database-url URL] [--broker-url URL] [--s3-endpoint-url URL]
        [--root var/topology] [--foundation FILE.model]

It prints the API's address and the admin token, registers --foundation (default: the demo
foundation when it is built) through the API, and runs until Ctrl-C.
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.service.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = REPO_ROOT / "mlft.env"
# mlft.env's service addresses, which the local topology points at this machine's servers.
ADDRESSES = ("DATABASE_URL", "BROKER_URL", "MLFT_S3_ENDPOINT_URL")
# Of the caller's own environment, none of these reach a process of the topology: its settings
# come from mlft.env and the launcher alone (a test run's MLFT_MODELS_DIR must not leak in).
SETTINGS_PREFIXES = ("MLFT_", "DATABASE_URL", "BROKER_URL", "AWS_")
# Importing torch and mace-torch takes a process minutes on a busy machine of 2 cores.
START_TIMEOUT_S = 600.0


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments skipped (the subset Compose reads alike)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, found {line!r}")
        values[key.strip()] = value.strip()
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_database(url: str, *, fresh: bool = False) -> None:
    """The topology's own PostgreSQL database, created when missing (dropped first if fresh)
    and migrated, so that the API and the workers can start side by side."""
    from core.service.db import migrate

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if fresh:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
        ).scalar()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    migrate(url)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    data_dir: Path | None = None
    queues: list[str] = field(default_factory=list)

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]


class Topology:
    """Starts and stops the processes; each one's log is `<root>/<name>.log`, its data folder
    `<root>/<name>/`."""

    def __init__(
        self,
        root: Path,
        *,
        database_url: str,
        broker_url: str,
        s3_endpoint_url: str | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.database_url = database_url
        self.broker_url = broker_url
        self.s3_endpoint_url = s3_endpoint_url
        self.overrides = overrides or {}
        self.processes: dict[str, Process] = {}
        self.api_url = ""

    def environment(self, data_dir: Path) -> dict[str, str]:
        """One process's environment: mlft.env, the local addresses, its own data folder."""
        inherited = {
            key: value for key, value in os.environ.items() if not key.startswith(SETTINGS_PREFIXES)
        }
        assert self.s3_endpoint_url is not None, "start the S3 server first"
        local = dict(
            zip(ADDRESSES, (self.database_url, self.broker_url, self.s3_endpoint_url), strict=True)
        )
        return {
            **inherited,
            **read_env_file(),
            **local,
            "MLFT_DATA_DIR": str(data_dir),
            **self.overrides,
        }

    def setting(self, name: str) -> str:
        return self.overrides.get(name) or read_env_file()[name]

    def start(self, workers: dict[str, list[str]]) -> "Topology":
        """The S3 server (unless given), then side by side the API and the workers (name ->
        queues consumed); the database must be migrated (prepare_database)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.s3_endpoint_url is None:
            self.start_s3_server()
        api = self.spawn_api()
        started = [self.spawn_worker(name, queues) for name, queues in workers.items()]
        self._wait(api, lambda: _answers(f"{self.api_url}/healthz"))
        for process in started:
            self._wait_until_worker_ready(process)
        return self

    def start_s3_server(self) -> None:
        port = free_port()
        self._spawn(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            dict(os.environ),
        )
        self.s3_endpoint_url = f"http://127.0.0.1:{port}"
        self._wait(self.processes["s3"], lambda: _answers(self.s3_endpoint_url))

    def spawn_api(self, name: str = "api") -> Process:
        port = free_port()
        data_dir = self._data_dir(name)
        process = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            self.environment(data_dir),
            data_dir=data_dir,
        )
        self.api_url = f"http://127.0.0.1:{port}"
        return process

    def start_worker(self, name: str, queues: list[str]) -> Process:
        """A worker as docker-compose.yml starts one: one task at a time, on the named queues
        ("gpu" and "cpu" mean the queues MLFT_GPU_QUEUE and MLFT_CPU_QUEUE name)."""
        process = self.spawn_worker(name, queues)
        self._wait_until_worker_ready(process)
        return process

    def spawn_worker(self, name: str, queues: list[str]) -> Process:
        from worker.local import worker_command

        data_dir = self._data_dir(name)
        resolved = [self.setting(f"MLFT_{queue.upper()}_QUEUE") for queue in queues]
        command = [*worker_command(resolved), f"--hostname={name}@%h"]
        process = self._spawn(name, command, self.environment(data_dir), data_dir=data_dir)
        process.queues = resolved
        return process

    def _wait_until_worker_ready(self, process: Process) -> None:
        self._wait(process, lambda: " ready." in process.log_path.read_text(errors="replace"))

    def kill(self, name: str) -> None:
        """SIGKILL, as a machine lost or the out-of-memory killer would."""
        process = self.processes.pop(name)
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait()

    def stop(self) -> None:
        """Workers first (they finish cleanly and remove their heartbeats), the API, S3 last."""
        for name in sorted(self.processes, key=lambda n: (n == "s3", n == "api")):
            stop_process(self.processes.pop(name).popen)

    def _data_dir(self, name: str) -> Path:
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        return data_dir

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str], data_dir: Path | None = None
    ) -> Process:
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        process = Process(name, popen, log_path, data_dir)
        self.processes[name] = process
        return process

    def _wait(self, process: Process, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if process.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{process.name} did not start:\n{process.log_tail()}")
            time.sleep(0.3)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.TransportError:
        return False
    return True


def register_foundation(api_url: str, admin_token: str, name: str, path: Path) -> dict:
    """What an admin does once: the model goes to the API, and from there to every worker."""
    with path.open("rb") as stream:
        response = httpx.post(
            f"{api_url}/foundation-models",
            headers={"Authorization": f"Bearer {admin_token}"},
            data={"name": name},
            files={"file": (path.name, stream)},
            # The API checks the file in a separate process before it accepts it.
            timeout=600,
        )
    response.raise_for_status()
    return response.json()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/mlft_topology"
    )
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--s3-endpoint-url", help="an S3 server to use instead of moto's")
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "var" / "topology")
    parser.add_argument(
        "--foundation",
        type=Path,
        default=REPO_ROOT / "var" / "foundations" / "mace-demo-emt.model",
        help="a .model file registered through the API once it runs (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin_token = secrets.token_urlsafe(24)
    # moto keeps its bucket in memory: with it, the database starts empty too, so that no row
    # names a file that went with the last run's S3 server.
    prepare_database(args.database_url, fresh=args.s3_endpoint_url is None)
    topology = Topology(
        args.root,
        database_url=args.database_url,
        broker_url=args.broker_url,
        s3_endpoint_url=args.s3_endpoint_url,
        overrides={"MLFT_ADMIN_TOKEN": admin_token},
    )
    try:
        # The shape of docker-compose.yml: a training worker and an evaluation worker.
        topology.start({"worker-gpu": ["gpu"], "worker-cpu": ["cpu"]})
        _register_given_foundation(topology.api_url, admin_token, args.foundation)
        print(f"API {topology.api_url}  admin token {admin_token}", flush=True)
        print(f"S3 {topology.s3_endpoint_url}  logs and data folders under {topology.root}")
        print("Ctrl-C stops every process", flush=True)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # delivered to sigwait alone
        signal.sigwait(stop_signals)
    finally:
        topology.stop()
    return 0


def _register_given_foundation(api_url: str, admin_token: str, path: Path) -> None:
    if not path.is_file():
        print(
            f"no foundation registered: {path} is missing (python "
            f"scripts/build_demo_foundation.py --out {path} builds the demo one)"
        )
        return
    try:
        registered = register_foundation(api_url, admin_token, path.stem, path)
    except httpx.HTTPStatusError as error:
        if error.response.status_code != 409:
            raise
        print(f"foundation {path.stem} is registered already")
        return
    print(f"registered foundation {registered['name']} sha256={registered['sha256']}")


if __name__ == "__main__":
    sys.exit(main())
