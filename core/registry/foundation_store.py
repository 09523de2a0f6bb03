"""Foundation model files shared by every process through artifact storage and the database.

A model is stored in its safe form (core.registry.safe_model) once, under its content hash
(`foundations/<sha256>.safetensors`), and a table row pins a name to that hash with the facts a
request needs, so an admin's registration on the API host is seen by a GPU worker on another
machine, a published model one worker downloaded serves all the others, and no request reads the
file. A process that loads a model gets a copy on its own disk from the store (S3: a cache folder
of its own); core.registry.loading checks the bytes against the pin before rebuilding the model.
"""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.artifacts.storage import Storage
from core.artifacts.storage_keys import foundation_key
from core.registry.safe_model import ModelFacts
from core.service.db import session_scope
from core.service.models import FoundationRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFoundation:
    name: str
    sha256: str  # of the safe file
    storage_key: str
    source: str  # "upload", "folder", "published" or "promoted"
    facts: ModelFacts
    upload_sha256: str  # of the file it was made from
    # A promoted job's model: its parent foundation, job and data (None for other sources).
    lineage: dict[str, Any] | None = None


class FoundationStore:
    """Names → hashes in the database, files in storage. Rows are never changed once written,
    so what a process has read is kept in memory: listing and resolving do not query again."""

    def __init__(self, sessions: sessionmaker[Session], storage: Storage) -> None:
        self.sessions = sessions
        self.storage = storage
        self._known: dict[str, StoredFoundation] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> StoredFoundation | None:
        with self._lock:
            known = self._known.get(name)
        if known is not None:
            return known
        with session_scope(self.sessions) as session:
            row = session.get(FoundationRecord, name)
            return None if row is None else self._remember(row)

    def all(self) -> list[StoredFoundation]:
        with session_scope(self.sessions) as session:
            rows = session.scalars(select(FoundationRecord).order_by(FoundationRecord.name))
            return [self._remember(row) for row in rows]

    def add(
        self,
        name: str,
        verified_file: Path,
        sha256: str,
        source: str,
        facts: ModelFacts,
        upload_sha256: str,
        lineage: dict[str, Any] | None = None,
    ) -> StoredFoundation:
        """Store a safe file whose bytes the caller has checked against `sha256` and pin `name`
        to it. A name pinned meanwhile by another process keeps its pin (returned as it is)."""
        key = foundation_key(sha256)
        if not self.storage.exists(key):
            self.storage.put_file(key, verified_file)
        try:
            with session_scope(self.sessions) as session:
                session.add(
                    FoundationRecord(
                        name=name,
                        sha256=sha256,
                        storage_key=key,
                        source=source,
                        size_bytes=verified_file.stat().st_size,
                        facts=facts.model_dump(),
                        upload_sha256=upload_sha256,
                        lineage=lineage,
                    )
                )
        except IntegrityError:
            logger.info("foundation %s was stored by another process meanwhile", name)
        stored = self.get(name)
        assert stored is not None  # just written, by us or by the process that won
        logger.info("foundation %s stored sha256=%s source=%s", name, stored.sha256, source)
        return stored

    def holds_file(self, stored: StoredFoundation) -> bool:
        return self.storage.exists(stored.storage_key)

    def restore_file(self, stored: StoredFoundation, verified_file: Path) -> None:
        """Put a pinned file back whose object storage lost (or never had: a database shared
        with another store, as a test topology does)."""
        self.storage.put_file(stored.storage_key, verified_file)
        logger.warning(
            "foundation %s file restored to storage sha256=%s", stored.name, stored.sha256
        )

    def local_copy(self, stored: StoredFoundation) -> Path:
        """The stored file on this machine's disk (fetched into the storage's cache folder on
        first use); its bytes are checked against the pin when loaded, not here."""
        return self.storage.local_path(stored.storage_key)

    def _remember(self, row: FoundationRecord) -> StoredFoundation:
        # Every row has its facts: migration 0012 converted the rows written before them.
        facts = ModelFacts.model_validate(row.facts)
        stored = StoredFoundation(
            row.name,
            row.sha256,
            row.storage_key,
            row.source,
            facts,
            row.upload_sha256 or "",
            row.lineage,
        )
        with self._lock:
            self._known[row.name] = stored
        return stored
