"""What a second machine needs travels through the database and S3 (moto's), never a shared
folder (issue 20): each 'machine' here has its own data folder and S3 cache."""

import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from moto import mock_aws

from core.artifacts.s3_storage import S3Storage
from core.artifacts.storage_keys import foundation_key
from core.errors import FoundationModelUnavailableError
from core.registry import foundations
from core.registry.foundation_store import FoundationStore
from core.registry.foundations import (
    FoundationRegistry,
    file_sha256,
    load_foundation,
    pin_model_file,
)
from core.science.cache import PredictionCache
from core.service.db import session_factory
from core.service.models import FoundationRecord
from core.workflows.checkpoints import CheckpointSync, restore_checkpoint


@pytest.fixture()
def bucket() -> Iterator[str]:
    with mock_aws():
        yield f"mlft-{uuid.uuid4().hex[:12]}"


class Machine:
    """One process's view: its own data folder and S3 cache, the shared database and bucket."""

    def __init__(self, root: Path, bucket: str, database_url: str) -> None:
        self.root = root
        self.storage = S3Storage(bucket, root / "cache" / "artifacts", region="us-east-1")
        self.sessions = session_factory(database_url)
        self.models_dir = root / "foundations"
        self.models_dir.mkdir(parents=True)
        self.registry = FoundationRegistry(
            self.models_dir, store=FoundationStore(self.sessions, self.storage)
        )


@pytest.fixture()
def api(tmp_path, bucket, database_url) -> Machine:
    return Machine(tmp_path / "api", bucket, database_url)


@pytest.fixture()
def worker(tmp_path, bucket, database_url) -> Machine:
    return Machine(tmp_path / "worker", bucket, database_url)


def own_model_file(demo_foundation: Path, folder: Path, name: str) -> Path:
    """A valid MACE model file with bytes of its own (torch.save names the archive after it)."""
    path = folder / f"{name}.model"
    torch.save(torch.load(demo_foundation, weights_only=False), path)
    return path


def test_a_model_registered_on_the_api_is_trained_from_on_a_worker_with_its_own_folder(
    api: Machine, worker: Machine, demo_foundation: Path, tmp_path: Path
) -> None:
    name = f"lab-{uuid.uuid4().hex[:8]}"
    upload = own_model_file(demo_foundation, tmp_path, name)

    registered = api.registry.register(name, upload)
    on_worker = worker.registry.resolve(name)

    assert on_worker.sha256 == registered.sha256 == file_sha256(on_worker.path)
    assert worker.registry.info(name).upload_sha256 == file_sha256(upload)
    assert on_worker.path.is_relative_to(worker.root)  # its own cache, fetched from S3
    assert not list(api.models_dir.iterdir())  # registration writes storage, not a folder
    assert isinstance(load_foundation(on_worker), torch.nn.Module)
    assert worker.registry.local_elements(name) == api.registry.local_elements(name)


def test_a_worker_refuses_a_fetched_file_whose_bytes_are_not_the_pinned_ones(
    api: Machine, worker: Machine, demo_foundation: Path, tmp_path: Path
) -> None:
    name = f"lab-{uuid.uuid4().hex[:8]}"
    api.registry.register(name, own_model_file(demo_foundation, tmp_path, name))
    fetched = worker.registry.resolve(name)
    with fetched.path.open("ab") as stream:
        stream.write(b"tampered")

    with pytest.raises(FoundationModelUnavailableError, match="changed since it was registered"):
        load_foundation(fetched)


def test_a_pinned_file_dropped_in_the_api_models_folder_reaches_every_worker(
    api: Machine, worker: Machine, demo_foundation: Path
) -> None:
    name = f"dropped-{uuid.uuid4().hex[:8]}"
    shutil.copyfile(demo_foundation, api.models_dir / f"{name}.model")
    pickle_sha256 = pin_model_file(api.models_dir / f"{name}.model")

    assert name in api.registry.import_models_folder()
    assert worker.registry.exists(name)
    assert name in worker.registry.local_names()
    sha256 = worker.registry.resolve(name).sha256  # of the safe form made from the pickle
    assert worker.registry.info(name).upload_sha256 == pickle_sha256
    assert api.storage.exists(foundation_key(sha256))


def test_a_published_model_is_downloaded_once_and_then_served_from_storage(
    api: Machine, worker: Machine, demo_foundation: Path, tmp_path: Path, monkeypatch
) -> None:
    # Nothing can be downloaded here: mace-torch's download is replaced by a file "fetched"
    # into this machine's mace cache, counting how often it runs.
    name = "mace-mp-0-small"
    downloads: list[str] = []
    fetched = own_model_file(demo_foundation, tmp_path, "downloaded")

    def download() -> str:
        downloads.append(name)
        return str(fetched)

    monkeypatch.setitem(foundations.PUBLISHED, name, download)
    with api.sessions() as session:  # the published name is shared by every test's database
        session.query(FoundationRecord).filter_by(name=name).delete()
        session.commit()

    first = api.registry.resolve(name)
    second = worker.registry.resolve(name)

    assert downloads == [name]
    assert first.sha256 == second.sha256 == file_sha256(second.path)
    assert second.path.is_relative_to(worker.root)
    assert isinstance(load_foundation(second), torch.nn.Module)


def test_predictions_the_api_computed_serve_a_worker_without_recomputing(
    api: Machine, worker: Machine
) -> None:
    configs = [molecule("H2O"), molecule("CH4")]
    calls: list[str] = []

    def compute(who: str):
        def run() -> np.ndarray:
            calls.append(who)
            return np.array([1.0, 2.0])

        return run

    api_cache = PredictionCache(api.root / "cache", api.storage)
    worker_cache = PredictionCache(worker.root / "cache", worker.storage)

    on_api = api_cache.energies("sha", configs, compute("api"))
    on_worker = worker_cache.energies("sha", configs, compute("worker"))

    assert calls == ["api"]
    assert np.array_equal(on_api, on_worker)


def test_a_checkpoint_pushed_by_one_worker_resumes_the_job_on_another(
    api: Machine, worker: Machine
) -> None:
    job_id = uuid.uuid4().hex
    first_folder = api.root / "work" / job_id / "checkpoints"
    first_folder.mkdir(parents=True)
    checkpoint = first_folder / "mlft_run-1_epoch-3.pt"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, checkpoint)
    assert CheckpointSync(api.storage, job_id, first_folder).push()

    second_folder = worker.root / "work" / job_id / "checkpoints"
    restored = restore_checkpoint(worker.storage, job_id, second_folder)

    assert restored == second_folder / checkpoint.name
    assert zipfile.is_zipfile(restored)
    assert restored.read_bytes() == checkpoint.read_bytes()


def test_a_stored_file_gone_from_storage_is_put_back_from_the_pinned_folder_copy(
    api: Machine, worker: Machine, demo_foundation: Path
) -> None:
    name = f"dropped-{uuid.uuid4().hex[:8]}"
    shutil.copyfile(demo_foundation, api.models_dir / f"{name}.model")
    pin_model_file(api.models_dir / f"{name}.model")
    api.registry.import_models_folder()
    sha256 = api.registry.info(name).sha256
    api.storage.delete(foundation_key(sha256))

    with pytest.raises(FoundationModelUnavailableError, match="not in artifact storage"):
        worker.registry.resolve(name)
    api.registry.import_models_folder()  # the API's next start

    assert worker.registry.resolve(name).sha256 == sha256
