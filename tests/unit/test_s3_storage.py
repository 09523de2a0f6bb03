"""Artifact storage on a real S3-compatible server (moto's, started here): the same behaviour as
the local folder, and an upload through the API lands in the bucket."""

import logging
import threading
from collections.abc import Iterator

import boto3
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from core.artifacts.s3_storage import S3Storage
from core.artifacts.storage import LocalStorage
from core.errors import ArtifactMissingError, StorageUnavailableError
from tests.topology.servers import CuttableLink

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}
GOOD = """2
Properties=species:S:1:pos:R:3:forces:R:3 energy=-10.5 pbc="F F F"
H 0.0 0.0 0.0 0.1 0.0 0.0
H 0.0 0.0 0.74 -0.1 0.0 0.0
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_endpoint, tmp_path) -> S3Storage:
    return S3Storage(
        f"bucket-{tmp_path.name.lower().replace('_', '-')}"[:60],
        tmp_path / "cache",
        endpoint_url=s3_endpoint,
        prefix="mlft",
        **CREDENTIALS,
    )


def test_a_stored_object_comes_back_byte_for_byte_and_is_deleted(s3, tmp_path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00weights\xff")

    s3.put_file("jobs/1/model.model", source)

    assert s3.exists("jobs/1/model.model")
    assert s3.fetch("jobs/1/model.model", tmp_path / "copy").read_bytes() == b"\x00weights\xff"
    cached = s3.local_path("jobs/1/model.model")
    assert cached.read_bytes() == b"\x00weights\xff"
    assert cached.is_relative_to(tmp_path / "cache")
    s3.delete("jobs/1/model.model")
    assert not s3.exists("jobs/1/model.model")
    with pytest.raises(ArtifactMissingError):
        s3.local_path("jobs/1/model.model")
    with pytest.raises(ArtifactMissingError):
        s3.fetch("jobs/1/model.model", tmp_path / "again")


@pytest.fixture()
def link(s3_endpoint) -> Iterator[CuttableLink]:
    """The S3 server through a link the test cuts (connections refused and reset)."""
    link = CuttableLink(int(s3_endpoint.rsplit(":", 1)[1]))
    link.mend()
    yield link
    link.cut()


def s3_through(link: CuttableLink, tmp_path, write_retry_seconds: float) -> S3Storage:
    return S3Storage(
        "bucket-cut",
        tmp_path / "cache",
        endpoint_url=link.url,
        write_retry_seconds=write_retry_seconds,
        **CREDENTIALS,
    )


def test_a_write_while_s3_is_unreachable_is_retried_until_it_is_back(
    link, s3_endpoint, tmp_path, caplog
) -> None:
    storage = s3_through(link, tmp_path, write_retry_seconds=60)
    source = tmp_path / "model.model"
    source.write_bytes(b"weights" * 1000)
    link.cut()
    threading.Timer(2.5, link.mend).start()

    with caplog.at_level(logging.WARNING, logger="core.artifacts.s3_storage"):
        storage.put_file("jobs/3/model.model", source)

    assert "retrying in" in caplog.text and "jobs/3/model.model" in caplog.text
    bucket = boto3.client("s3", endpoint_url=s3_endpoint, **_boto(CREDENTIALS))
    stored = bucket.get_object(Bucket="bucket-cut", Key="jobs/3/model.model")["Body"].read()
    assert stored == source.read_bytes()


def test_a_write_gives_up_after_its_retry_window_and_a_read_at_once(link, tmp_path) -> None:
    storage = s3_through(link, tmp_path, write_retry_seconds=2)
    source = tmp_path / "model.model"
    source.write_bytes(b"weights")
    link.cut()

    with pytest.raises(StorageUnavailableError, match="after retrying for 2 s"):
        storage.put_file("jobs/4/model.model", source)
    with pytest.raises(StorageUnavailableError, match="read of jobs/4/model.model"):
        storage.exists("jobs/4/model.model")
    with pytest.raises(StorageUnavailableError):
        storage.fetch("jobs/4/model.model", tmp_path / "back.model")
    assert not (tmp_path / "back.model.partial").exists()


def test_an_overwritten_object_refreshes_the_cached_copy(s3, tmp_path) -> None:
    source = tmp_path / "checkpoint.pt"
    source.write_bytes(b"epoch 1")
    s3.put_file("jobs/2/checkpoint/latest.pt", source)
    assert s3.local_path("jobs/2/checkpoint/latest.pt").read_bytes() == b"epoch 1"

    source.write_bytes(b"epoch 2")
    s3.put_file("jobs/2/checkpoint/latest.pt", source)

    assert s3.local_path("jobs/2/checkpoint/latest.pt").read_bytes() == b"epoch 2"


def test_objects_live_under_the_prefix(s3, s3_endpoint, tmp_path) -> None:
    source = tmp_path / "d.extxyz"
    source.write_text(GOOD)
    s3.put_file("datasets/x/d.extxyz", source)

    client = boto3.client("s3", endpoint_url=s3_endpoint, **_boto(CREDENTIALS))
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=s3.bucket)["Contents"]]

    assert keys == ["mlft/datasets/x/d.extxyz"]


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../b"])
def test_keys_cannot_leave_the_store(s3, tmp_path, key: str) -> None:
    with pytest.raises(ValueError, match="inside the store"):
        s3.exists(key)
    with pytest.raises(ValueError, match="inside the store"):
        LocalStorage(tmp_path).exists(key)


def test_deleting_a_missing_key_is_harmless_in_both_stores(s3, tmp_path) -> None:
    source = tmp_path / "latest.pt"
    source.write_bytes(b"epoch 1")
    local = LocalStorage(tmp_path / "store")
    for store in (s3, local):
        store.put_file("jobs/kept/checkpoint/latest.pt", source)

        store.delete("jobs/none/checkpoint/latest.pt")

        assert not store.exists("jobs/none/checkpoint/latest.pt")
        assert store.exists("jobs/kept/checkpoint/latest.pt")


def test_a_dataset_uploaded_through_the_api_is_stored_in_the_bucket(
    settings, app, s3_endpoint, tmp_path
) -> None:
    from api.app import create_app

    s3_settings = settings.model_copy(
        update={
            "s3_bucket": "mlft-api",
            "s3_endpoint_url": s3_endpoint,
            "s3_region": "us-east-1",
            "s3_access_key_id": "testing",
            "s3_secret_access_key": SecretStr("testing"),
            "data_dir": tmp_path / "api-data",
        }
    )
    s3_app = create_app(s3_settings, start_worker=False)
    client = TestClient(s3_app)

    # Bytes no other test uploads: the same bytes again would return the existing dataset.
    content = GOOD.replace("energy=-10.5", "energy=-10.5 source=s3_test").encode()
    response = client.post("/datasets", files={"file": ("water.extxyz", content)})

    assert response.status_code == 201, response.text
    dataset = response.json()
    storage = s3_app.state.context.storage
    assert isinstance(storage, S3Storage)
    bucket = boto3.client("s3", endpoint_url=s3_endpoint, **_boto(CREDENTIALS))
    key = f"datasets/{dataset['id']}/water.extxyz"
    assert bucket.get_object(Bucket="mlft-api", Key=key)["Body"].read() == content
    assert storage.fetch(key, tmp_path / "back.extxyz").read_bytes() == content
    assert client.get(f"/datasets/{dataset['id']}").json()["summary"]["n_configs"] == 1
    assert client.get("/readyz").json()["checks"]["storage"] == "ok"
    assert not (tmp_path / "api-data" / "artifacts").exists()


def _boto(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["access_key_id"],
        "aws_secret_access_key": credentials["secret_access_key"],
        "region_name": credentials["region"],
    }
