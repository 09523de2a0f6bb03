"""The connection pool pings a connection only after it sat idle (core.service.db, issue 17): a
request on a connection used moments ago costs no extra round trip, and one dropped while idle (a
database restart) is replaced before a request sees it."""

import pytest
from sqlalchemy import text

from core.service import db
from core.service.db import PoolLimits, make_engine


@pytest.fixture()
def engine(database_url):
    engine = make_engine(database_url, PoolLimits(size=1, max_overflow=0, timeout=5))
    yield engine
    engine.dispose()


def count_pings(engine) -> list[int]:
    pings = [0]
    ping = engine.dialect.do_ping

    def counted(dbapi_connection) -> bool:
        pings[0] += 1
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted
    return pings


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_used_moments_ago_is_not_pinged(engine) -> None:
    first = backend_pid(engine)
    pings = count_pings(engine)

    assert backend_pid(engine) == first
    assert pings == [0]


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    engine, database_url, monkeypatch
) -> None:
    dropped = backend_pid(engine)
    killer = make_engine(database_url)
    with killer.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
    killer.dispose()
    # As if it had sat idle past the window.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    pings = count_pings(engine)

    replacement = backend_pid(engine)

    assert replacement != dropped
    assert pings[0] >= 1
