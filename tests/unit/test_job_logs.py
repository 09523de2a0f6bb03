"""A job's log lines travel through the database, bounded, and the whole log through storage."""

import pytest

from core.artifacts.storage import LocalStorage
from core.artifacts.storage_keys import MACE_LOG_NAME, mace_log_key
from core.service.db import session_factory
from core.service.job_logs import LOG_LINES_KEPT, LogShipper, lines_after
from core.service.models import new_id


@pytest.fixture()
def sessions(database_url):
    return session_factory(database_url)


def test_only_the_last_lines_are_kept_and_numbered_without_gaps(sessions, tmp_path) -> None:
    job_id = new_id()
    log = tmp_path / MACE_LOG_NAME
    shipper = LogShipper(sessions, job_id, log)
    total = LOG_LINES_KEPT + 50
    log.write_text("".join(f"line {n}\n" for n in range(1, total + 1)) + "partial")

    shipper.ship()

    with sessions() as session:
        kept = lines_after(session, job_id, 0)
    assert [row.seq for row in kept] == list(range(51, total + 1))
    assert kept[-1].line == f"line {total}"


def test_a_resumed_run_continues_the_numbering_and_skips_what_the_last_run_shipped(
    sessions, tmp_path
) -> None:
    job_id = new_id()
    log = tmp_path / MACE_LOG_NAME
    first = LogShipper(sessions, job_id, log)
    log.write_text("first run\n")
    first.ship()
    second = LogShipper(sessions, job_id, log)  # same machine: the file is still there
    with log.open("a") as stream:
        stream.write("second run\n")

    second.ship()

    with sessions() as session:
        assert [(row.seq, row.line) for row in lines_after(session, job_id, 0)] == [
            (1, "first run"),
            (2, "second run"),
        ]


def test_the_whole_log_is_stored_as_an_artifact_at_the_end(sessions, tmp_path) -> None:
    job_id = new_id()
    log = tmp_path / "work" / MACE_LOG_NAME
    log.parent.mkdir()
    shipper = LogShipper(sessions, job_id, log)
    log.write_text("".join(f"line {n}\n" for n in range(LOG_LINES_KEPT * 2)))
    storage = LocalStorage(tmp_path / "artifacts")

    key = shipper.store(storage)

    assert key == mace_log_key(job_id)
    assert storage.local_path(key).read_text() == log.read_text()
