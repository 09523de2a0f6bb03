"""mlft_client.Client against the real app (TestClient, PostgreSQL), and what HTTP clients see:
documented spec examples and CORS."""

import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes import events as events_route
from api.routes.jobs import JOB_SPEC_EXAMPLES
from core.artifacts.storage_keys import model_key
from core.data.demo_data import generate_target_dataset, write_extxyz
from core.science.spec import JobSpec
from core.service.jobs import transition
from core.service.models import JobState
from mlft_client import Client, MlftError


@pytest.fixture()
def api(client: TestClient) -> Client:
    return Client("http://testserver", token="secret", http=client)


@pytest.fixture(scope="module")
def train_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configs = generate_target_dataset(8, seed=11, system="molecules")
    return write_extxyz(configs, tmp_path_factory.mktemp("client") / "train.extxyz")


@pytest.fixture()
def train_id(api: Client, train_path: Path) -> str:
    return api.upload_dataset(train_path)["id"]


def test_uploaded_dataset_is_summarised_and_listed(api: Client, train_path: Path) -> None:
    dataset = api.upload_dataset(train_path)

    assert dataset["name"] == "train.extxyz"
    assert dataset["summary"]["n_configs"] == 8
    assert dataset["id"] in {item["id"] for item in api.datasets()}


def test_job_is_created_read_and_cancelled(api: Client, train_id: str) -> None:
    job = api.create_job({"train_dataset": train_id, "strategy": {"name": "lora"}})

    assert job["state"] == "queued"
    assert api.job(job["id"])["spec"]["strategy"]["rank"] == 4
    assert api.job(job["id"])["epochs"] is None
    assert api.job(job["id"], include=["epochs", "split"])["epochs"] == []
    assert api.cancel(job["id"])["state"] == "cancelled"
    assert api.wait(job["id"], progress=False)["state"] == "cancelled"


def test_invalid_spec_raises_mlft_error_with_the_servers_422_detail(
    api: Client, train_id: str
) -> None:
    with pytest.raises(MlftError) as raised:
        api.create_job({"train_dataset": train_id, "hyperparameters": {"lr": -1}})

    assert raised.value.status == 422
    assert raised.value.detail == "hyperparameters.lr: Input should be greater than 0"


def test_domain_errors_carry_the_servers_sentence(
    api: Client, train_id: str, tmp_path: Path
) -> None:
    with pytest.raises(MlftError) as unknown_dataset:
        api.create_job({"train_dataset": "nope"})
    with pytest.raises(MlftError) as missing_job:
        api.job("nope")
    job = api.create_job({"train_dataset": train_id})
    with pytest.raises(MlftError) as no_model:
        api.download_model(job["id"], tmp_path / "job.model")

    assert (unknown_dataset.value.status, missing_job.value.status) == (422, 404)
    assert "train_dataset nope does not exist" in unknown_dataset.value.detail
    assert missing_job.value.detail == "job nope does not exist"
    assert no_model.value.status == 409
    assert "no model yet" in no_model.value.detail
    assert list(tmp_path.iterdir()) == []


def test_report_of_an_unknown_job_raises_not_found(api: Client) -> None:
    with pytest.raises(MlftError) as raised:
        api.report("nope")

    assert raised.value.status == 404


def test_wait_follows_the_stream_until_the_job_is_cancelled_elsewhere(
    api: Client, train_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = api.create_job({"train_dataset": train_id})["id"]
    canceller = threading.Timer(1.0, api.cancel, args=[job_id])
    canceller.start()

    finished = api.wait(job_id, progress=True, timeout=30)
    canceller.join()

    assert finished["state"] == "cancelled"
    progress_lines = capsys.readouterr().err.splitlines()
    assert progress_lines[0] == f"job {job_id} queued · 0/50 epochs"
    assert progress_lines[-1] == f"job {job_id} cancelled · 0/50 epochs"


def test_wait_gives_up_after_its_timeout(
    api: Client, train_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_route, "KEEPALIVE_SECONDS", 0.1)
    job_id = api.create_job({"train_dataset": train_id})["id"]

    with pytest.raises(TimeoutError, match=job_id):
        api.wait(job_id, progress=False, timeout=1)
    api.cancel(job_id)


def test_finished_job_downloads_and_plugs_into_ase(
    api: Client,
    app,
    train_id: str,
    demo_foundation: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mace.calculators import MACECalculator

    # A finished job whose delivered model is the demo foundation: training itself is e2e's job.
    job_id = api.create_job({"train_dataset": train_id})["id"]
    context = app.state.context
    context.storage.put_file(model_key(job_id), demo_foundation)
    with context.sessions() as session:
        transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
        transition(
            session, job_id, JobState.RUNNING, JobState.SUCCEEDED, model_key=model_key(job_id)
        )
    monkeypatch.setenv("MLFT_CACHE_DIR", str(tmp_path / "cache"))
    atoms = generate_target_dataset(1, seed=3, system="molecules")[0]

    downloaded = api.download_model(job_id, tmp_path)
    atoms.calc = api.calculator(job_id)
    energy = atoms.get_potential_energy()
    atoms.calc = MACECalculator(
        model_paths=str(demo_foundation), device="cpu", default_dtype="float64"
    )

    assert downloaded == tmp_path / f"mlft-{job_id}.model"
    assert downloaded.read_bytes() == demo_foundation.read_bytes()
    assert (tmp_path / "cache" / f"mlft-{job_id}.model").is_file()
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)


def test_token_travels_as_a_bearer_header() -> None:
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"data": [], "count": 0})

    http = httpx.Client(transport=httpx.MockTransport(server))
    Client("http://mlft.example", token="abc", http=http).datasets()
    Client("http://mlft.example", http=http).datasets()

    assert seen == ["Bearer abc", None]


@pytest.mark.parametrize("name", sorted(JOB_SPEC_EXAMPLES))
def test_documented_job_spec_examples_are_valid_specs(app, name: str) -> None:
    documented = app.openapi()["paths"]["/jobs"]["post"]["requestBody"]["content"]
    example = documented["application/json"]["examples"][name]["value"]

    spec = JobSpec.model_validate(example)

    # Every field the example names is read as written: none ignored, renamed or coerced.
    assert spec.model_dump(mode="json", exclude_unset=True) == example


def test_cors_admits_only_configured_origins(settings) -> None:
    allowed = "https://lab.example.org"
    app = create_app(settings.model_copy(update={"cors_origins": [allowed]}), start_worker=False)
    preflight = {"Access-Control-Request-Method": "POST"}

    with TestClient(app) as browser:
        admitted = browser.options("/jobs", headers={"Origin": allowed, **preflight})
        refused = browser.options("/jobs", headers={"Origin": "https://evil.example", **preflight})

    assert admitted.headers["access-control-allow-origin"] == allowed
    assert "access-control-allow-origin" not in refused.headers


DIALECTS = Path(__file__).resolve().parent.parent / "data" / "dialects"


def test_upload_names_label_keys_and_the_same_file_again_returns_the_dataset(api: Client) -> None:
    # Issue 18 items 1 and 10.
    path = DIALECTS / "custom_keys.extxyz"
    keys = {"energy_key": "pbe_energy", "forces_key": "pbe_forces", "virials_key": "pbe_virials"}

    first = api.upload_dataset(path, **keys)
    again = api.upload_dataset(path, **keys)

    assert first["summary"]["labels"] == ["energy", "forces", "virials"]
    assert again["id"] == first["id"]


def test_evaluations_are_created_and_read(api: Client) -> None:
    dataset = api.upload_dataset(DIALECTS / "energy_only.extxyz")

    evaluation = api.create_evaluation(
        {"model": {"foundation_model": "mace-demo-emt"}, "dataset": dataset["id"]}
    )

    assert evaluation["state"] == "queued"
    assert api.evaluation(evaluation["id"])["spec"]["dataset"] == dataset["id"]
    assert evaluation["id"] in api.evaluation_report(evaluation["id"])["title"]
