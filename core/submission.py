"""Accept a job: check the spec against the stored datasets and the foundation registry."""

import logging

from sqlalchemy.orm import Session

from core.catalog import referenced_dataset
from core.errors import InvalidSpecError
from core.foundations import FoundationRegistry
from core.jobs import create_job
from core.models import Job
from core.spec import JobSpec

logger = logging.getLogger(__name__)


def submit_job(session: Session, spec: JobSpec, registry: FoundationRegistry) -> Job:
    """Create the job row (state queued) and commit it; the caller enqueues it afterwards."""
    train = referenced_dataset(session, spec.train_dataset, "train_dataset")
    labels = set(train.summary["labels"])
    if not {"energy", "forces"} <= labels:
        raise InvalidSpecError(
            f"train_dataset {train.id} needs energy and forces labels; it has "
            f"{', '.join(sorted(labels)) or 'none'}"
        )
    train_elements = set(train.summary["elements"])
    for role in ("valid_dataset", "test_dataset"):
        dataset_id = getattr(spec, role)
        if dataset_id is None:
            continue
        other = referenced_dataset(session, dataset_id, role)
        extra = set(other.summary["elements"]) - train_elements
        if extra:
            raise InvalidSpecError(
                f"{role} {dataset_id} contains element(s) {', '.join(sorted(extra))} that the "
                "training data lack, so the model cannot predict them"
            )
    if spec.isolated_atoms_dataset is not None:
        referenced_dataset(session, spec.isolated_atoms_dataset, "isolated_atoms_dataset")
    if not registry.exists(spec.foundation_model):
        raise InvalidSpecError(
            f"unknown foundation model {spec.foundation_model!r}; GET /foundation-models lists them"
        )
    job = create_job(session, spec.model_dump(mode="json"), train.id)
    session.commit()
    logger.info("job=%s queued strategy=%s dataset=%s", job.id, spec.strategy.name, train.id)
    return job
