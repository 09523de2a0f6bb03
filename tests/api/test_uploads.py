"""Bad input at the upload: each broken file is refused with a 4xx naming the problem, large and
compressed uploads are bounded while they stream, and a refusal leaves nothing behind."""

import gzip
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.service.db import session_factory
from core.service.models import Dataset

BAD_FILES = Path(__file__).resolve().parent.parent / "data" / "bad_extxyz"
# file in tests/data/bad_extxyz -> (status, words the message must contain)
EXPECTED: dict[str, tuple[int, list[str]]] = {
    "truncated.extxyz": (422, ["configuration 1", "declares 3 atoms", "truncated"]),
    "nan_energy.extxyz": (422, ["configuration 1", "energy is NaN"]),
    "nan_forces.extxyz": (422, ["configuration 1", "forces of atom 1 are not finite"]),
    "wrong_count.extxyz": (422, ["configuration 2", "atom count of configuration 1 too small"]),
    "no_atom_count.extxyz": (422, ["configuration 1", "expected an atom count"]),
    "missing_forces.extxyz": (422, ["configuration 2", "no forces", "earlier configurations"]),
    "missing_energy.extxyz": (422, ["configuration 2", "no energy"]),
    "huge_cell.extxyz": (422, ["configuration 1", "cell volume", "Lattice in Å"]),
    "unknown_element.extxyz": (422, ["configuration 1", "unknown chemical symbol 'Xx'"]),
    "overlapping_atoms.extxyz": (422, ["configuration 1", "atoms 1 and 2 are 0.01 Å apart"]),
    "binary_junk.extxyz": (422, ["not text", "byte 0x89 at offset 0"]),
    "corrupt_gzip.extxyz.gz": (422, ["gzip", "cannot be decompressed"]),
}
GOOD = """2
Properties=species:S:1:pos:R:3:forces:R:3 energy=-10.5 pbc="F F F"
H 0.0 0.0 0.0 0.1 0.0 0.0
H 0.0 0.0 0.74 -0.1 0.0 0.0
"""
SMALL_LIMIT = 64 * 1024


def leftovers(settings) -> tuple[int, list[Path]]:
    with session_factory(settings.resolved_database_url)() as session:
        rows = session.scalar(select(func.count()).select_from(Dataset))
    folders = [settings.data_dir / "artifacts", settings.data_dir / "uploads"]
    files = sorted(p for folder in folders if folder.exists() for p in folder.rglob("*"))
    return rows, [p for p in files if p.is_file()]


@pytest.fixture(scope="module")
def small_limit_client(settings, app):
    from api.app import create_app

    limited = create_app(
        settings.model_copy(update={"max_upload_bytes": SMALL_LIMIT}), start_worker=False
    )
    return TestClient(limited)


def test_the_corpus_covers_every_committed_bad_file() -> None:
    assert sorted(p.name for p in BAD_FILES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_file_is_refused_naming_its_problem_and_nothing_is_left(
    client, settings, name: str
) -> None:
    status, words = EXPECTED[name]
    before = leftovers(settings)

    response = client.post("/datasets", files={"file": (name, (BAD_FILES / name).read_bytes())})

    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["detail"]
    assert leftovers(settings) == before


def test_a_gzip_compressed_upload_is_unpacked_and_summarised(client) -> None:
    unique = GOOD.replace("energy=-10.5", "energy=-10.5 source=gzip_test")
    response = client.post(
        "/datasets", files={"file": ("train.extxyz.gz", gzip.compress(unique.encode()))}
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "train.extxyz"
    assert body["summary"]["n_configs"] == 1
    assert body["summary"]["size_bytes"] == len(unique.encode())


def test_a_gzip_bomb_stops_at_the_upload_limit(small_limit_client, settings) -> None:
    bomb = gzip.compress(b"0" * (200 * SMALL_LIMIT), compresslevel=9)
    assert len(bomb) < SMALL_LIMIT
    before = leftovers(settings)

    response = small_limit_client.post("/datasets", files={"file": ("bomb.extxyz.gz", bomb)})

    assert response.status_code == 413
    assert f"decompresses to more than {SMALL_LIMIT} bytes" in response.json()["detail"]
    assert leftovers(settings) == before


def test_an_upload_above_the_limit_is_refused_while_it_streams(
    small_limit_client, settings
) -> None:
    before = leftovers(settings)
    big = GOOD.encode() * (SMALL_LIMIT // len(GOOD) + 10)

    declared = small_limit_client.post("/datasets", files={"file": ("big.extxyz", big)})

    def chunks():
        # No Content-Length: the server can only find out by counting the body as it arrives.
        boundary = b"mlftboundary"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        yield b'filename="big.extxyz"\r\nContent-Type: application/octet-stream\r\n\r\n'
        for _ in range(40):
            yield big
        yield b"\r\n--" + boundary + b"--\r\n"

    streamed = small_limit_client.post(
        "/datasets",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=mlftboundary"},
    )

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert f"limit of {SMALL_LIMIT} bytes" in response.json()["detail"]
    assert leftovers(settings) == before


@pytest.mark.parametrize(
    ("request_kwargs", "words"),
    [
        ({"data": {"name": "x"}}, "multipart/form-data"),
        ({"files": {"other": ("a.extxyz", GOOD.encode())}}, "no file field named 'file'"),
        (
            {"content": b"not multipart", "headers": {"Content-Type": "text/plain"}},
            "multipart/form-data",
        ),
    ],
)
def test_a_request_without_the_file_field_is_refused(client, request_kwargs, words) -> None:
    response = client.post("/datasets", **request_kwargs)

    assert response.status_code == 422
    assert words in response.json()["detail"]
