"""Migration 0012_i26_trust converts registrations made before the safe form: a legitimate
pickle becomes its safe form with its facts recorded, a hostile one is removed, and nothing in it
runs (issue 26)."""

import importlib.util
import uuid
from pathlib import Path

import sqlalchemy as sa
import torch

from core.artifacts.storage import storage_from_settings
from core.registry.foundation_store import FoundationStore
from core.registry.foundations import FoundationRegistry, file_sha256, load_foundation
from core.service.db import session_factory
from core.service.models import FoundationRecord
from tests.conftest import REPO_ROOT
from tests.core.registry.hostile_models import mace_carrying_exec

MIGRATION = REPO_ROOT / "migrations" / "versions" / "0012_i26_trust.py"


def migration():
    spec = importlib.util.spec_from_file_location("migration_0012_i26_trust", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def legacy_row(sessions, storage, name: str, pickle: Path) -> None:
    """A row as registration wrote it before: the pickle itself in storage, no facts."""
    sha256 = file_sha256(pickle)
    storage.put_file(f"foundations/{sha256}.model", pickle)
    with sessions() as session:
        session.add(
            FoundationRecord(
                name=name,
                sha256=sha256,
                storage_key=f"foundations/{sha256}.model",
                source="upload",
                size_bytes=pickle.stat().st_size,
            )
        )
        session.commit()


def test_existing_pickles_are_converted_and_a_hostile_one_removed(
    settings, demo_foundation: Path, tmp_path: Path
) -> None:
    sessions = session_factory(settings.resolved_database_url)
    storage = storage_from_settings(settings)
    good, bad = f"legacy-{uuid.uuid4().hex[:8]}", f"legacy-{uuid.uuid4().hex[:8]}"
    good_file = tmp_path / "good.model"
    torch.save(torch.load(demo_foundation, weights_only=False), good_file)
    marker = tmp_path / "ran"
    legacy_row(sessions, storage, good, good_file)
    legacy_row(
        sessions, storage, bad, mace_carrying_exec(tmp_path / "bad.model", demo_foundation, marker)
    )
    table = FoundationRecord.__table__

    with sessions() as session:
        connection = session.connection()
        rows = connection.execute(
            sa.select(table.c.name, table.c.sha256, table.c.storage_key).where(
                table.c.name.in_([good, bad])
            )
        ).all()
        migration().convert_rows(connection, rows)
        session.commit()

    registry = FoundationRegistry(tmp_path / "models", store=FoundationStore(sessions, storage))
    info = registry.info(good)
    assert not marker.exists()
    assert registry.info(bad) is None and not registry.exists(bad)
    assert info is not None and info.upload_sha256 == file_sha256(good_file)
    assert info.elements[0] == "H" and info.architecture == "ScaleShiftMACE"
    assert isinstance(load_foundation(registry.resolve(good)), torch.nn.Module)
    with sessions() as session:
        session.execute(sa.delete(table).where(table.c.name == good))
        session.commit()
