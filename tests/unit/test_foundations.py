"""The foundation registry: names are keys, only pinned regular files are served, and every load
checks the bytes of the safe form before rebuilding the model from them."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from core.errors import (
    FoundationModelUnavailableError,
    InvalidModelFileError,
    InvalidSpecError,
    NotFoundError,
)
from core.registry.foundations import (
    FoundationModel,
    FoundationRegistry,
    check_mace_model_file,
    file_sha256,
    load_foundation,
    pin_model_file,
)

HOSTILE_NAMES = [
    "../data/artifacts/jobs/0123/model",
    "/etc/passwd",
    "..",
    "mace-demo-emt/../mace-demo-emt",
    "mace-demo-emt\x00",
    "..\\secrets",
    "C:\\models\\x",
    ".hidden",
    "a..b",
    "x" * 101,
    "",
]


@pytest.fixture()
def models_dir(tmp_path: Path, demo_foundation: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(demo_foundation, folder / "good.model")
    pin_model_file(folder / "good.model")
    return folder


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_that_are_not_registry_keys_are_refused_before_any_lookup(
    models_dir: Path, name: str
) -> None:
    registry = FoundationRegistry(models_dir)

    assert not registry.exists(name)
    with pytest.raises(InvalidSpecError, match="not a registry name"):
        registry.resolve(name)
    with pytest.raises(InvalidSpecError, match="not a registry name"):
        registry.local_elements(name)


def test_a_symlink_in_the_models_folder_is_neither_listed_nor_loaded(models_dir: Path) -> None:
    # Even a link to a real, pinned model: links are refused, not followed.
    os.symlink(models_dir / "good.model", models_dir / "linked.model")
    pin_model_file(models_dir / "good.model")
    (models_dir / "linked.model.sha256").write_text(file_sha256(models_dir / "good.model"))
    os.symlink("/etc/passwd", models_dir / "passwd.model")
    registry = FoundationRegistry(models_dir)

    assert registry.local_names() == ["good"]
    for name in ("linked", "passwd"):
        assert not registry.exists(name)
        with pytest.raises(NotFoundError):
            registry.resolve(name)
    pinned = file_sha256(models_dir / "good.model")
    forged = FoundationModel("linked", models_dir / "linked.model", pinned)
    with pytest.raises(FoundationModelUnavailableError, match="regular file"):
        load_foundation(forged)


def test_a_model_file_without_its_pin_is_not_served(models_dir: Path, demo_foundation) -> None:
    shutil.copyfile(demo_foundation, models_dir / "dropped.model")
    registry = FoundationRegistry(models_dir)

    assert "dropped" not in registry.local_names()
    with pytest.raises(NotFoundError):
        registry.resolve("dropped")


def test_loading_checks_the_bytes_against_the_pin(models_dir: Path) -> None:
    registry = FoundationRegistry(models_dir)
    foundation = registry.resolve("good")
    assert foundation.path == models_dir / "good.safetensors"  # the safe form, never the pickle
    assert isinstance(load_foundation(foundation), torch.nn.Module)
    assert registry.local_elements("good")

    with foundation.path.open("ab") as stream:
        stream.write(b"tampered")

    with pytest.raises(FoundationModelUnavailableError, match="changed since it was registered"):
        load_foundation(registry.resolve("good"))
    # What a request needs is recorded: reading it loads nothing.
    assert registry.local_elements("good") == list(registry.info("good").elements)


def test_reading_a_foundations_facts_writes_nothing(models_dir: Path) -> None:
    registry = FoundationRegistry(models_dir)
    before = sorted(p.name for p in models_dir.iterdir())

    assert registry.info("good") is None  # the operator's pickle is not converted by a read
    assert registry.local_elements("good") is None
    assert registry.exists("good")
    assert sorted(p.name for p in models_dir.iterdir()) == before

    registry.import_models_folder()  # at start and when listing
    assert registry.info("good").architecture == "ScaleShiftMACE"


def test_a_pickle_changed_since_it_was_pinned_is_not_converted(models_dir: Path) -> None:
    with (models_dir / "good.model").open("ab") as stream:
        stream.write(b"tampered")

    with pytest.raises(FoundationModelUnavailableError, match="changed since it was registered"):
        FoundationRegistry(models_dir).resolve("good")


class _RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_registration_refuses_what_is_not_a_mace_model_and_leaves_nothing(
    models_dir: Path, tmp_path: Path
) -> None:
    registry = FoundationRegistry(models_dir)
    before = sorted(p.name for p in models_dir.iterdir())
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00junk" * 1000)
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.model"
    torch.save(_RunsAShellCommand(marker), hostile)

    with pytest.raises(InvalidModelFileError, match="not a PyTorch model archive"):
        registry.register("junk", junk)
    with pytest.raises(InvalidModelFileError, match="system"):
        registry.register("hostile", hostile)

    assert not marker.exists()
    assert sorted(p.name for p in models_dir.iterdir()) == before


def test_a_module_without_atomic_numbers_is_not_a_mace_model(tmp_path: Path) -> None:
    linear = tmp_path / "linear.model"
    torch.save(torch.nn.Linear(2, 2), linear)

    with pytest.raises(InvalidModelFileError, match="Linear.*fine-tunes only a ScaleShiftMACE"):
        check_mace_model_file(linear)
