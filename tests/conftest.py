"""Shared fixtures: real PostgreSQL and Redis (the CI starts them), and the demo foundation model.

Settings are read from the environment when modules are first imported, so the test environment is
fixed here, before any project import.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_DATABASE_URL = os.environ.setdefault(
    "MLFT_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/mlft_test"
)
os.environ["DATABASE_URL"] = TEST_DATABASE_URL
os.environ.setdefault("BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ["MLFT_DATA_DIR"] = tempfile.mkdtemp(prefix="mlft-test-")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Building the demo foundation takes a minute; keep it between runs unless told otherwise.
FOUNDATIONS_DIR = Path(
    os.environ.setdefault("MLFT_MODELS_DIR", str(REPO_ROOT / "var" / "test-foundations"))
)
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core.config import Settings  # noqa: E402
from core.service.db import migrate  # noqa: E402


def _recreate_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url() -> str:
    _recreate_database(TEST_DATABASE_URL)
    migrate(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def demo_foundation() -> Path:
    """The small EMT-trained MACE the repo builds itself (no weights can be downloaded here)."""
    from core.registry.foundations import pin_model_file
    from core.science.demo_foundation import (
        DEMO_FOUNDATION_NAME,
        build_demo_foundation,
        install_shipped_demo_foundation,
    )

    path = FOUNDATIONS_DIR / f"{DEMO_FOUNDATION_NAME}.model"
    if not path.is_file() and not install_shipped_demo_foundation(path):
        build_demo_foundation(path)
    # A copy made without its pin (another checkout's build) is registered here.
    pin_model_file(path)
    return path


@pytest.fixture(scope="session")
def registered_demo_foundation(demo_foundation: Path):
    """The demo foundation as the registry hands it out (pinned by its sha256)."""
    from core.registry.foundations import FoundationRegistry

    return FoundationRegistry(demo_foundation.parent).resolve(demo_foundation.stem)


@pytest.fixture()
def data_dir(settings: Settings) -> Path:
    return settings.data_dir


@pytest.fixture(scope="session")
def acac_data() -> Iterator[Path]:
    if not (SHARED_DATA / "acac-pbe-d3-train_300K.xyz").is_file():
        pytest.skip("the shared acetylacetone data are not next to this checkout")
    yield SHARED_DATA


@pytest.fixture(scope="session")
def app(settings: Settings, demo_foundation: Path):
    # Jobs name the demo foundation, which the registry must hold before any is submitted.
    from api.app import create_app

    return create_app(settings, start_worker=False)


@pytest.fixture(scope="session")
def client(app) -> Iterator:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def target_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small molecule datasets at a 'different level of theory' (EMT + per-element offsets)."""
    from core.data.demo_data import generate_target_dataset, write_extxyz

    folder = tmp_path_factory.mktemp("target")
    return {
        "train": write_extxyz(
            generate_target_dataset(40, seed=1, system="molecules"), folder / "train.extxyz"
        ),
        "test": write_extxyz(
            generate_target_dataset(12, seed=2, system="molecules"), folder / "test.extxyz"
        ),
    }


def upload(client, path: Path) -> dict:
    with path.open("rb") as stream:
        response = client.post("/datasets", files={"file": (path.name, stream)})
    # 200: the same bytes were uploaded before (by another test module); the dataset is reused.
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture(scope="session")
def standin():
    """`standin(family, dtype)`: registry name of a stand-in of a published foundation
    (core.registry.standin_foundations), built once and cached by content in the models folder."""
    from tests.families import standin_name

    return lambda family, dtype="float64": standin_name(FOUNDATIONS_DIR, family, dtype)
