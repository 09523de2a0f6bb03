"""Engine, sessions and schema migration (Alembic is the only thing that creates tables)."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DatabaseBusyError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@dataclass(frozen=True)
class PoolLimits:
    """Connections one process keeps to the database server (Settings.db_pool_*)."""

    size: int = 10
    max_overflow: int = 20
    timeout: float = 10.0  # seconds a caller waits for a free connection

    @property
    def capacity(self) -> int:
        return self.size + self.max_overflow


def make_engine(url: str, pool: PoolLimits = PoolLimits()) -> Engine:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout,
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The API and the embedded worker are separate processes writing one file: WAL lets
    # readers proceed while the worker records epochs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache
def engine_for(url: str, pool: PoolLimits = PoolLimits()) -> Engine:
    return make_engine(url, pool)


def session_factory(url: str, pool: PoolLimits = PoolLimits()) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url, pool), expire_on_commit=False)


def connect_now(session: Session, retry_after: int) -> None:
    """Take the session's connection from the pool now; DatabaseBusyError when none frees up
    within the pool timeout (the caller answers 503, never 500)."""
    try:
        session.connection()
    except sa_exc.TimeoutError as error:
        raise DatabaseBusyError(
            "the service is busy: no database connection became free in time; retry shortly",
            retry_after=retry_after,
        ) from error


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
