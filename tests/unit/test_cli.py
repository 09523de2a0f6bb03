"""`mlft` commands against the real app (the TestClient stands in for the network)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench.service import free_port
from core.data.demo_data import generate_target_dataset, write_extxyz
from mlft_client.cli import main
from tests.conftest import REPO_ROOT

URL = ["--url", "http://testserver"]
CLIENT_ROOT = REPO_ROOT / "client"


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configs = generate_target_dataset(6, seed=21, system="molecules")
    return write_extxyz(configs, tmp_path_factory.mktemp("cli") / "train.extxyz")


@pytest.fixture()
def train_id(client: TestClient, train_file: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*URL, "datasets", "upload", str(train_file)], http=client) == 0
    return capsys.readouterr().out.strip()


def test_datasets_upload_prints_the_id_alone_and_a_summary_on_stderr(
    client: TestClient, train_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*URL, "datasets", "upload", str(train_file)], http=client)

    out, err = capsys.readouterr()
    dataset = client.get(f"/datasets/{out.strip()}").json()
    assert status == 0
    assert dataset["name"] == "train.extxyz"
    elements = " ".join(dataset["summary"]["elements"])
    assert err == (
        f"{train_file}: 6 configurations, elements {elements}, labels energy 6/6, forces 6/6\n"
    )


def test_datasets_list_shows_an_uploaded_dataset(
    client: TestClient,
    train_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Wide enough for every column whatever other tests named their uploads (a narrow terminal
    # drops the widest columns).
    monkeypatch.setenv("COLUMNS", "400")
    assert main([*URL, "datasets", "list"], http=client) == 0

    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if line.startswith(train_id)]
    assert row.split()[1:3] == ["train.extxyz", "6"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_jobs_submit_reads_a_spec_file_then_show_and_cancel(
    client: TestClient,
    train_id: str,
    tmp_path: Path,
    suffix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = tmp_path / f"spec{suffix}"
    if suffix == ".json":
        spec.write_text(json.dumps({"train_dataset": train_id, "strategy": {"name": "lora"}}))
    else:
        spec.write_text(f"train_dataset: {train_id}\nstrategy:\n  name: lora\n")

    assert main([*URL, "jobs", "submit", str(spec)], http=client) == 0
    job_id = capsys.readouterr().out.strip()
    assert main([*URL, "jobs", "show", job_id, "--json"], http=client) == 0
    shown = json.loads(capsys.readouterr().out)
    assert main([*URL, "jobs", "cancel", job_id], http=client) == 0

    assert shown["state"] == "queued"
    assert shown["spec"]["strategy"]["name"] == "lora"
    assert capsys.readouterr().out == f"job {job_id} cancelled\n"


def test_watching_a_job_that_did_not_succeed_exits_1_saying_so(
    client: TestClient, train_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    client.post(f"/jobs/{job_id}/cancel")

    status = main([*URL, "jobs", "watch", job_id], http=client)

    assert status == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"mlft: error: job {job_id} cancelled"


def test_jobs_show_of_a_missing_job_prints_one_line_and_exits_1(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*URL, "jobs", "show", "nope"], http=client)

    out, err = capsys.readouterr()
    assert status == 1
    assert (out, err) == ("", "mlft: error: job nope does not exist (HTTP 404)\n")


def test_a_spec_the_server_rejects_names_the_field(
    client: TestClient, train_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"train_dataset": train_id, "hyperparameters": {"lr": -1}}))

    status = main([*URL, "jobs", "submit", str(spec)], http=client)

    assert status == 1
    assert capsys.readouterr().err == (
        "mlft: error: hyperparameters.lr: Input should be greater than 0 (HTTP 422)\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must hold one object"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_an_unreadable_spec_file_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(content)

    status = main(["--url", f"http://127.0.0.1:{free_port()}", "jobs", "submit", str(spec)])

    assert status == 1
    assert message in capsys.readouterr().err


def test_an_unreachable_server_prints_one_line_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    status = main(["--url", url, "datasets", "list"])

    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"mlft: error: cannot reach the mlft server at {url}: ")
    assert err.count("\n") == 1


def test_downloading_the_model_of_an_unfinished_job_fails_without_a_file(
    client: TestClient, train_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]

    status = main([*URL, "jobs", "download", job_id, "-o", str(tmp_path)], http=client)

    assert status == 1
    assert "has no model yet" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    client.post(f"/jobs/{job_id}/cancel")


def test_client_and_cli_import_no_server_code() -> None:
    probe = (
        "import sys, mlft_client.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'api', 'core', 'worker', 'mace', 'ase', 'torch', 'fastapi', 'sqlalchemy', 'celery'}))"
    )

    # From client/, so the probe imports this tree's client whatever the environment installed.
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=CLIENT_ROOT, capture_output=True, text=True, check=True
    ).stdout

    assert imported.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["serve", "--port", "8001"], "mlft-server --host 127.0.0.1 --port 8001"),
        (["worker"], "mlft-worker"),
    ],
)
def test_serve_and_worker_name_the_server_program_they_moved_to(
    argv: list[str], program: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(argv)

    assert status == 1
    assert f"run `{program}` where the mlft server is installed" in capsys.readouterr().err


DIALECTS = REPO_ROOT / "tests" / "data" / "dialects"


def test_datasets_upload_names_label_keys_and_list_shows_labels_and_warnings(
    client: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that the table shows each row's labels whole.
    monkeypatch.setenv("COLUMNS", "250")
    # Issue 18 item 10: keys as options; labels (with counts and keys) and warnings listed.
    custom = str(DIALECTS / "custom_keys.extxyz")
    assert main([*URL, "datasets", "upload", custom], http=client) == 0
    unlabelled_id, unlabelled_err = (part.strip() for part in capsys.readouterr())
    keys = ["--energy-key", "pbe_energy", "--forces-key", "pbe_forces"]
    assert (
        main(
            [*URL, "datasets", "upload", custom, *keys, "--virials-key", "pbe_virials"], http=client
        )
        == 0
    )
    labelled_id = capsys.readouterr().out.strip()

    assert main([*URL, "datasets", "list"], http=client) == 0

    listing = capsys.readouterr().out.splitlines()
    assert "mlft: warning:" in unlabelled_err and "no energy or forces labels" in unlabelled_err
    [labelled] = [line for line in listing if line.startswith(labelled_id)]
    assert "energy 6/6 (pbe_energy), forces 6/6 (pbe_forces), virials 6/6 (pbe_virials)" in labelled
    [unlabelled] = [line for line in listing if line.startswith(unlabelled_id)]
    assert " none " in unlabelled
    assert f"warning: {unlabelled_id}: no energy or forces labels found" in "\n".join(listing)


def test_evaluations_submit_and_show(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main([*URL, "datasets", "upload", str(DIALECTS / "energy_only.extxyz")], http=client) == 0
    )
    dataset_id = capsys.readouterr().out.strip()
    spec = tmp_path / "evaluation.json"
    spec.write_text(
        json.dumps({"model": {"foundation_model": "mace-demo-emt"}, "dataset": dataset_id})
    )

    assert main([*URL, "evaluations", "submit", str(spec)], http=client) == 0
    evaluation_id = capsys.readouterr().out.strip()
    assert main([*URL, "evaluations", "show", evaluation_id, "--json"], http=client) == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == evaluation_id
    assert shown["spec"]["dataset"] == dataset_id


def test_a_finished_job_prints_its_verdicts_one_a_line() -> None:
    from mlft_client.commands import verdict_lines

    md = {"label": "MD stable", "value": "yes, 100 K over 0.1 of 250 ps", "level": "good"}

    assert verdict_lines([md]) == ["  MD stable: yes, 100 K over 0.1 of 250 ps"]
    assert verdict_lines(None) == []
