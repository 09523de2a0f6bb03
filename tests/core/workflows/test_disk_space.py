"""Issue 26: work that fails because its worker's disk is full says so, naming the disk."""

import errno
import os
from pathlib import Path

from core.errors import TrainingFailedError
from core.workflows.disk_space import disk_full_error, mount_point


def test_an_out_of_space_error_anywhere_in_the_chain_names_the_disk(tmp_path: Path) -> None:
    folder = tmp_path / "work" / "job-1"
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "model.pt"))
        except OSError as cause:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from cause
    except RuntimeError as error:
        full = disk_full_error(folder, error)

    assert full is not None
    message = str(full)
    assert f"{mount_point(tmp_path)} has" in message and "is full" in message
    assert str(folder) in message and "PytorchStreamWriter" in message


def test_mace_exiting_with_no_space_in_its_log_names_the_disk(tmp_path: Path) -> None:
    error = TrainingFailedError(
        "mace-torch training exited with code 1: OSError: [Errno 28] No space left on device"
    )

    assert disk_full_error(tmp_path, error) is not None


def test_any_other_failure_on_a_roomy_disk_is_left_as_it_is(tmp_path: Path) -> None:
    error = TrainingFailedError("mace-torch training exited with code 1: KeyError: 'hidden'")

    assert disk_full_error(tmp_path / "gone" / "job", error) is None


def test_the_mount_point_of_the_root_is_the_root() -> None:
    assert mount_point(Path("/")) == Path("/")
