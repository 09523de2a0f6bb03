"""Datasets as stored objects: validate an upload, keep the file and its summary, look them up."""

import hashlib
import logging
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.artifacts.storage import Storage
from core.artifacts.storage_keys import dataset_key
from core.data.datasets import inspect_extxyz, write_normalised
from core.data.labels import AUTOMATIC, LabelKeys
from core.errors import InvalidSpecError, NotFoundError
from core.service.listing import NO_FILTERS, ListFilters, Page, list_page
from core.service.models import Dataset, new_id

logger = logging.getLogger(__name__)


def register_dataset(
    session: Session, storage: Storage, upload: Path, name: str, keys: LabelKeys = AUTOMATIC
) -> Dataset:
    """Validate and store an uploaded file; a rejected or failed upload leaves nothing behind.

    With label keys named, the stored copy holds the labels under the keys every reader
    recognises (core.data.datasets.write_normalised); the summary keeps the uploaded file's hash.
    """
    summary = inspect_extxyz(upload, keys)
    dataset_id = new_id()
    key = dataset_key(dataset_id, _safe_filename(name))
    stored = upload
    if keys.to_dict():
        stored = write_normalised(upload, upload.with_name(upload.name + ".labels.extxyz"), keys)
    try:
        storage.put_file(key, stored)
    finally:
        if stored != upload:
            stored.unlink(missing_ok=True)
    try:
        dataset = Dataset(
            id=dataset_id,
            name=name,
            storage_key=key,
            sha256=summary.sha256,
            summary=summary.to_dict(),
        )
        session.add(dataset)
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete(key)
        raise
    logger.info("dataset=%s stored name=%s configs=%d", dataset_id, name, summary.n_configs)
    return dataset


def find_same_upload(
    session: Session, storage: Storage, upload: Path, keys: LabelKeys = AUTOMATIC
) -> Dataset | None:
    """A dataset of this project made from the same bytes read with the same label keys, whose
    file storage still holds: an upload repeated by a script or a second click gets it back
    instead of a copy (and a dataset whose artifact was lost is uploaded anew)."""
    digest = hashlib.sha256()
    with upload.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    query = select(Dataset).where(Dataset.sha256 == digest.hexdigest()).order_by(Dataset.created_at)
    wanted = keys.to_dict()
    return next(
        (
            d
            for d in session.scalars(query)
            if d.summary.get("requested_keys", {}) == wanted and storage.exists(d.storage_key)
        ),
        None,
    )


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFoundError(f"dataset {dataset_id} does not exist")
    return dataset


def referenced_dataset(
    session: Session, dataset_id: str, role: str, *, param: str | None = None
) -> Dataset:
    """A dataset named in a job spec: a missing one makes the spec invalid, not the URL.
    `param`: the spec's field naming it, when `role` is not that field's path."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise InvalidSpecError(f"{role} {dataset_id} does not exist", param=param or role)
    return dataset


def list_datasets(
    session: Session, filters: ListFilters = NO_FILTERS, *, limit: int = 100, offset: int = 0
) -> Page[Dataset]:
    """The datasets matching `filters`, newest first: one page and how many match."""
    return list_page(session, Dataset, filters, limit=limit, offset=offset)


def _safe_filename(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "dataset"
    return stem[:100]
