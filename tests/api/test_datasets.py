from pathlib import Path

from sqlalchemy import func, select

from core.service.db import session_factory
from core.service.models import Dataset
from tests.conftest import upload

GOOD = """2
Properties=species:S:1:pos:R:3:forces:R:3 energy=-10.5 pbc="F F F" config_type=dimer
H 0.0 0.0 0.0 0.1 0.0 0.0
H 0.0 0.0 0.74 -0.1 0.0 0.0
"""


def write(tmp_path: Path, text: str, name: str = "data.extxyz") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def post_file(client, path: Path):
    with path.open("rb") as stream:
        return client.post("/datasets", files={"file": (path.name, stream)})


def stored_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "artifacts").rglob("*") if p.is_file()]


def dataset_rows(settings) -> int:
    with session_factory(settings.resolved_database_url)() as session:
        return session.scalar(select(func.count()).select_from(Dataset))


def test_upload_stores_the_file_and_its_summary(client, tmp_path, target_files) -> None:
    body = upload(client, target_files["train"])

    summary = body["summary"]
    assert summary["n_configs"] == 40
    assert set(summary["elements"]) <= {"H", "C", "N", "O"}
    assert {"energy", "forces"} <= set(summary["labels"])
    assert client.get(f"/datasets/{body['id']}").json() == body
    assert body["id"] in [d["id"] for d in client.get("/datasets").json()["data"]]


def test_nan_energy_is_rejected_naming_the_configuration_and_nothing_is_left(
    client, tmp_path, data_dir, settings
) -> None:
    before_files, before_rows = stored_files(data_dir), dataset_rows(settings)
    bad = GOOD + GOOD.replace("energy=-10.5", "energy=nan")

    response = post_file(client, write(tmp_path, bad))

    assert response.status_code == 422
    assert "configuration 2" in response.json()["detail"]
    assert "energy" in response.json()["detail"].lower()
    assert stored_files(data_dir) == before_files
    assert dataset_rows(settings) == before_rows


def test_forces_with_two_columns_are_rejected(client, tmp_path) -> None:
    bad = (
        GOOD.replace("forces:R:3", "forces:R:2")
        .replace(" 0.1 0.0 0.0", " 0.1 0.0")
        .replace("-0.1 0.0 0.0", "-0.1 0.0")
    )
    response = post_file(client, write(tmp_path, bad))
    assert response.status_code == 422
    assert "configuration 1" in response.json()["detail"]


def test_empty_and_binary_uploads_are_rejected(client, tmp_path) -> None:
    empty = client.post("/datasets", files={"file": ("empty.extxyz", b"")})
    junk = client.post("/datasets", files={"file": ("junk.extxyz", bytes(range(256)) * 10)})
    assert empty.status_code == 422
    assert junk.status_code == 422
    assert junk.json()["detail"]


def test_unknown_dataset_is_404(client) -> None:
    response = client.get("/datasets/does-not-exist")
    assert response.status_code == 404
    assert "does-not-exist" in response.json()["detail"]
