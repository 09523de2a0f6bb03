"""Watching jobs with the client against the real API (issue 28 item 3): a connection dropped
mid-stream is resumed, a finished job is shown once; and the CLI's --json outputs parse, its
lists read every page, its errors are typed (item 6)."""

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rich.console import Console

from bench.service import free_port
from core.data.demo_data import generate_target_dataset, write_extxyz
from core.service.jobs import record_epoch, transition
from core.service.models import JobState
from mlft_client import Backoff, Client, Conflict, NotFound, ValidationFailed
from mlft_client import transport as transport_module
from mlft_client.cli import main
from tests.api.test_client_parity import openapi_routes

URL = ["--url", "http://testserver"]


class DroppingProxy:
    """A TCP proxy in front of the API that cuts the first events stream after its first bytes
    of body, as a load balancer's idle timeout or a lost Wi-Fi does, and records each request."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(downstream,), daemon=True).start()

    def _relay(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        head = downstream.recv(65536)
        self.requests.append(head.decode("latin-1"))
        upstream.sendall(head)
        drop = b"/events" in head.split(b"\r\n", 1)[0] and self.dropped == 0
        received = b""
        with downstream, upstream:
            while chunk := upstream.recv(65536):
                received += chunk
                downstream.sendall(chunk)
                if drop and b"event: state" in received:
                    self.dropped += 1
                    # RST rather than FIN: the abrupt end of a dead connection.
                    downstream.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def served_app(app: FastAPI) -> Iterator[int]:
    """The app served over real sockets (uvicorn in a thread): the TestClient cannot drop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def api(client: TestClient) -> Client:
    return Client("http://testserver", token="secret", http=client)


@pytest.fixture(scope="module")
def train_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configs = generate_target_dataset(6, seed=31, system="molecules")
    return write_extxyz(configs, tmp_path_factory.mktemp("watch") / "train.extxyz")


@pytest.fixture()
def train_id(api: Client, train_path: Path) -> str:
    return api.upload_dataset(train_path)["id"]


def test_wait_resumes_after_the_connection_drops_mid_stream(
    served_app: int, api: Client, train_id: str
) -> None:
    proxy = DroppingProxy(served_app)
    job_id = api.create_job({"train_dataset": train_id})["id"]
    remote = Client(f"http://127.0.0.1:{proxy.port}", token="secret")
    # Cancelled once the first stream was cut and the client is back on a second one.
    canceller = threading.Thread(target=cancel_after_reconnect, args=(api, proxy, job_id))
    canceller.start()

    try:
        finished = remote.wait(job_id, progress=False, timeout=60, backoff=Backoff(first=0.2))
    finally:
        canceller.join()
        remote.close()
        proxy.close()

    streams = [head for head in proxy.requests if f"/jobs/{job_id}/events" in head]
    assert finished["state"] == "cancelled"
    assert proxy.dropped == 1
    assert len(streams) >= 2
    # A server that numbers its events (issue 28) is asked to resume after the last one seen.
    if events_have_ids(api, job_id):
        assert "last-event-id:" in streams[1].lower()


def cancel_after_reconnect(api: Client, proxy: DroppingProxy, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(f"/jobs/{job_id}/events" in head for head in proxy.requests) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    api.cancel(job_id)


def events_have_ids(api: Client, job_id: str) -> bool:
    return next(api.events(job_id)).id is not None


def succeeded_job(app: FastAPI, api: Client, train_id: str) -> str:
    """A job that ran three epochs and succeeded, written as a worker would record it."""
    job = api.create_job({"train_dataset": train_id, "hyperparameters": {"max_num_epochs": 3}})
    with app.state.context.sessions() as session:
        transition(session, job["id"], JobState.QUEUED, JobState.RUNNING)
        for epoch in (None, 0, 1, 2):
            record_epoch(
                session,
                job["id"],
                {"epoch": epoch, "valid_energy_rmse_mev_per_atom": 4.0, "head": "Default"},
            )
        transition(session, job["id"], JobState.RUNNING, JobState.SUCCEEDED)
    return job["id"]


def test_watching_a_finished_job_prints_its_final_state_once(
    app: FastAPI, api: Client, train_id: str
) -> None:
    job_id = succeeded_job(app, api, train_id)
    out = io.StringIO()

    finished = api.wait(job_id, console=Console(file=out, width=80, color_system=None))

    assert finished["state"] == "succeeded"
    assert out.getvalue().splitlines() == [f"job {job_id} succeeded · 3/3 epochs · E 4.00 meV/atom"]


def test_a_followed_job_away_from_a_terminal_shows_each_change_once(
    api: Client, train_id: str
) -> None:
    job_id = api.create_job({"train_dataset": train_id})["id"]
    canceller = threading.Timer(1.0, api.cancel, args=[job_id])
    canceller.start()
    out = io.StringIO()

    finished = api.wait(job_id, timeout=30, console=Console(file=out, width=80))
    canceller.join()

    assert finished["state"] == "cancelled"
    assert out.getvalue().splitlines() == [
        f"job {job_id} queued · 0/50 epochs",
        f"job {job_id} cancelled · 0/50 epochs",
    ]


def test_typed_errors_from_the_server(api: Client, train_id: str) -> None:
    job_id = api.create_job({"train_dataset": train_id})["id"]
    api.cancel(job_id)

    with pytest.raises(NotFound):
        api.job("nope")
    with pytest.raises(Conflict):
        api.cancel(job_id)
    with pytest.raises(ValidationFailed) as invalid:
        api.create_job({"train_dataset": train_id, "hyperparameters": {"lr": -1}})

    assert invalid.value.param == "hyperparameters.lr"
    assert "greater than 0" in invalid.value.detail


def test_lists_read_every_page(api: Client, train_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        api.cancel(api.create_job({"train_dataset": train_id})["id"])
    everything = api._transport.json("GET", "/jobs", params={"limit": 1000})["data"]
    monkeypatch.setattr(transport_module, "PAGE_SIZE", 2)

    jobs = api.jobs()

    assert [job["id"] for job in jobs] == [job["id"] for job in everything]
    assert len(jobs) >= 3 and jobs.total == len(everything)


JSON_COMMANDS = [
    (["datasets", "list"], ("GET", "/datasets"), list),
    (["datasets", "show", "{dataset}"], ("GET", "/datasets/{dataset_id}"), dict),
    (["jobs", "list"], ("GET", "/jobs"), list),
    (["jobs", "show", "{job}"], ("GET", "/jobs/{job_id}"), dict),
    (["foundations", "list"], ("GET", "/foundation-models"), list),
    (["foundations", "show", "mace-demo-emt"], ("GET", "/foundation-models"), dict),
    (["strategies"], ("GET", "/strategies"), dict),
    (["evaluations", "list"], ("GET", "/evaluations"), list),
    (["sweeps", "list"], ("GET", "/sweeps"), list),
    (["replay-sets", "list"], ("GET", "/replay-sets"), list),
]


@pytest.mark.parametrize(
    ("argv", "route", "shape"), JSON_COMMANDS, ids=[" ".join(argv) for argv, *_ in JSON_COMMANDS]
)
def test_list_and_show_commands_print_json_that_parses(
    app: FastAPI,
    client: TestClient,
    api: Client,
    train_id: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    route: tuple[str, str],
    shape: type,
) -> None:
    if route not in openapi_routes(app):
        pytest.skip(f"this server has no {' '.join(route)} yet (issue 28, server side)")
    job_id = api.create_job({"train_dataset": train_id})["id"]
    argv = [part.format(dataset=train_id, job=job_id) for part in argv]

    status = main([*URL, *argv, "--json"], http=client)

    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert isinstance(printed, shape)
    api.cancel(job_id)


def test_job_list_fits_80_columns_and_filters_by_tag(
    app: FastAPI,
    client: TestClient,
    api: Client,
    train_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    tagged = "tag" in {p["name"] for p in app.openapi()["paths"]["/jobs"]["get"]["parameters"]}
    spec = {"train_dataset": train_id}
    job = api.create_job(spec, name="cu-lora", tags={"campaign": "cu"}) if tagged else None
    other = api.create_job(spec)

    assert main([*URL, "jobs", "list"], http=client) == 0
    table = capsys.readouterr().out.splitlines()
    if tagged:
        assert main([*URL, "jobs", "list", "--tag", "campaign=cu", "--json"], http=client) == 0
        found = json.loads(capsys.readouterr().out)
        assert job is not None and [item["id"] for item in found] == [job["id"]]
        api.cancel(job["id"])
    api.cancel(other["id"])

    assert max(len(line) for line in table) <= 80
    assert any(other["id"] in line for line in table)


def test_promote_then_fine_tune_from_the_promoted_model(
    app: FastAPI, client: TestClient, api: Client, train_id: str, demo_foundation: Path
) -> None:
    if ("POST", "/jobs/{job_id}/promote") not in openapi_routes(app):
        pytest.skip("this server has no promote route yet (issue 28 item 4, server side)")
    from core.workflows.runner import model_key

    job_id = succeeded_job(app, api, train_id)
    app.state.context.storage.put_file(model_key(job_id), demo_foundation)
    with app.state.context.sessions() as session:
        from core.service.jobs import get_job

        get_job(session, job_id).model_key = model_key(job_id)
        session.commit()
    assert main([*URL, "jobs", "promote", job_id, "cu-round-1"], http=client) == 0
    assert "cu-round-1" in {model["name"] for model in api.foundations()}
    follow_up = api.create_job({"train_dataset": train_id, "foundation_model": "cu-round-1"})
    assert follow_up["spec"]["foundation_model"] == "cu-round-1"
    api.cancel(follow_up["id"])
