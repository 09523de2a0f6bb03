from pathlib import Path

import pytest

from core.artifacts.storage import LocalStorage
from core.errors import ArtifactMissingError


def test_a_stored_file_comes_back_byte_for_byte(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00weights\xff")

    storage.put_file("jobs/1/model.model", source)

    assert storage.exists("jobs/1/model.model")
    assert storage.fetch("jobs/1/model.model", tmp_path / "copy").read_bytes() == b"\x00weights\xff"


def test_deleting_the_last_object_removes_its_folders(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "data.extxyz"
    source.write_text("1\n\nH 0 0 0\n")
    storage.put_file("datasets/abc/data.extxyz", source)

    storage.delete("datasets/abc/data.extxyz")

    assert list((tmp_path / "store").iterdir()) == []
    with pytest.raises(ArtifactMissingError):
        storage.local_path("datasets/abc/data.extxyz")


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../b"])
def test_keys_cannot_leave_the_store(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="inside the store"):
        LocalStorage(tmp_path).exists(key)
