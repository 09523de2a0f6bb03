"""Engine, sessions and schema migration (Alembic is the only thing that creates tables)."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from core.config import PoolLimits

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
DEFAULT_POOL = PoolLimits()
# What SQLAlchemy raises while the database server is away (restarting, unreachable): the
# connection refused, or dropped under a statement. Worth trying again later, never a bug.
DATABASE_UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError)


def make_engine(url: str, pool: PoolLimits = DEFAULT_POOL) -> Engine:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url, pool_size=pool.size, max_overflow=pool.max_overflow, pool_timeout=pool.timeout
    )
    event.listen(engine, "checkin", _note_last_use)
    event.listen(engine, "checkout", _pinging_when_idle(engine.dialect))
    return engine


# A connection given back less than this long ago is taken as alive; an older one may have been
# dropped (a database restart, a firewall's idle timeout) and is pinged first. SQLAlchemy's
# pool_pre_ping pings on every checkout: a round trip per request, a quarter of a status read's
# cost under load (issue 17). A connection that dies within the window fails its request once
# (503, core.errors mapping) and SQLAlchemy then discards every connection older than it.
PING_AFTER_IDLE_S = 10.0
LAST_USE = "mlft_last_use"


def _note_last_use(_dbapi_connection, record) -> None:
    record.info[LAST_USE] = time.monotonic()


def _pinging_when_idle(dialect: Dialect) -> Callable[..., None]:
    def ping_if_idle(dbapi_connection, record, _proxy) -> None:
        last_use = record.info.get(LAST_USE)
        if last_use is not None and time.monotonic() - last_use < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another (SQLAlchemy's contract).
            raise sa_exc.DisconnectionError(f"database connection lost: {error}") from error

    return ping_if_idle


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The API and the embedded worker are separate processes writing one file: WAL lets
    # readers proceed while the worker records epochs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache
def engine_for(url: str, pool: PoolLimits = DEFAULT_POOL) -> Engine:
    return make_engine(url, pool)


def session_factory(url: str, pool: PoolLimits = DEFAULT_POOL) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url, pool), expire_on_commit=False)


def reading_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on the same pool for requests that only read. Each statement commits on its own
    (autocommit), so a read costs no BEGIN and no ROLLBACK round trip, two of the four a status
    read made (issue 17); what a statement sees is unchanged, since READ COMMITTED gives every
    statement its own snapshot inside a transaction too."""
    engine = factory.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(url: str) -> None:
    """Bring the database schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
