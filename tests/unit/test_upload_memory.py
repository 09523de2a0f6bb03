"""Upload validation streams (issue 17, item 10): its memory does not grow with the file. Each
upload is spooled, unpacked and validated in a fresh process whose peak RSS growth is measured
(bench/upload_memory.py runs the same at 200 MB and with a 464 MiB gzip bomb)."""

import pytest

from bench.upload_memory import MIB, measure_validation, write_frames, write_gzip_bomb

# Reading the whole file, as validation did, grows by several times the file's size.
LARGE_BYTES = 8 * MIB
BOUND_MIB = 20

pytestmark = pytest.mark.skipif(
    not __import__("sys").platform.startswith("linux"), reason="ru_maxrss in KiB (Linux)"
)


def test_validating_a_large_valid_upload_keeps_memory_bounded(tmp_path) -> None:
    # Whole frames repeated: generating them one by one would take longer than validating.
    seed = write_frames(tmp_path / "seed.extxyz", 256 * 1024).read_bytes()
    path = tmp_path / "large.extxyz"
    path.write_bytes(seed * (LARGE_BYTES // len(seed) + 1))

    result = measure_validation(path)

    assert result.outcome.startswith("accepted"), result.outcome
    assert result.growth_mb < BOUND_MIB, result


def test_a_gzip_bomb_under_the_size_limit_is_rejected_with_bounded_memory(tmp_path) -> None:
    bomb = write_gzip_bomb(tmp_path / "bomb.extxyz.gz", 64 * MIB)

    result = measure_validation(bomb)

    assert "not text" in result.outcome, result.outcome
    assert result.growth_mb < BOUND_MIB, result


def test_a_gzip_bomb_above_the_size_limit_stops_at_the_limit(tmp_path) -> None:
    bomb = write_gzip_bomb(tmp_path / "bomb.extxyz.gz", 64 * MIB)

    result = measure_validation(bomb, limit=16 * MIB)

    assert "UploadTooLargeError" in result.outcome, result.outcome
    assert result.growth_mb < BOUND_MIB, result


def test_a_line_longer_than_any_extxyz_line_is_refused_without_reading_it_whole(tmp_path) -> None:
    from core.data.datasets import inspect_extxyz
    from core.data.extxyz_frames import MAX_LINE_BYTES
    from core.errors import InvalidDatasetError

    path = tmp_path / "one-line.extxyz"
    path.write_bytes(b"1\n" + b"a" * (3 * MAX_LINE_BYTES))

    with pytest.raises(InvalidDatasetError, match="line 2 is longer than"):
        inspect_extxyz(path)


def test_a_configuration_declaring_more_atoms_than_accepted_is_refused_before_reading_them(
    tmp_path,
) -> None:
    from core.data.datasets import inspect_extxyz
    from core.data.extxyz_frames import MAX_ATOMS_PER_CONFIG
    from core.errors import InvalidDatasetError

    path = tmp_path / "huge.extxyz"
    path.write_text(f"{MAX_ATOMS_PER_CONFIG + 1}\nenergy=1.0\nH 0 0 0\n")

    with pytest.raises(InvalidDatasetError, match=r"configuration 1 \(line 1\).*at most"):
        inspect_extxyz(path)
