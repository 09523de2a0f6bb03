"""Chained fine-tunes (issue 28): a succeeded job's delivered model becomes a foundation.

The delivered `.model` is a pickle the service wrote itself, but it is still read only in the
registry's sandbox (core.registry.model_sandbox), exactly as an admin's upload is: the registry
keeps its own safe copy under the model's sha256, so deleting the job's artifacts later leaves
the foundation whole. Its lineage (parent foundation, job, data, E0 method, strategy) is kept in
the registry row, shown by GET /foundation-models/{name} and copied into the model card of every
job that starts from it.
"""

import logging
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.artifacts.storage import Storage
from core.errors import (
    ArtifactMissingError,
    ConflictError,
    InvalidSpecError,
    InvalidStateTransitionError,
)
from core.registry.catalogue import foundation_name_problem
from core.registry.foundations import FoundationModel, FoundationRegistry
from core.service.auth import Principal
from core.service.jobs import get_job
from core.service.models import FoundationRecord, Job, JobState

logger = logging.getLogger(__name__)

PROMOTED = "promoted"
# The dataset roles whose sha256 pins the data a promoted model was trained and measured on.
LINEAGE_ROLES = ("train", "valid", "test")


def namespace_of(principal: Principal) -> str | None:
    """The prefix a project token's promoted names must carry (`<project id>.`), so one
    project cannot take a name another expects; None for the admin, who may use any name."""
    if principal.admin:
        return None
    return f"{principal.require_project()}."


def require_promotion_name(name: str, principal: Principal) -> str:
    problem = foundation_name_problem(name)
    if problem is not None:
        raise InvalidSpecError(problem, param="name")
    prefix = namespace_of(principal)
    if prefix is not None and not name.startswith(prefix):
        raise InvalidSpecError(
            f"a project token promotes into its own namespace: name the model {prefix}{name} "
            "(the admin token may use any name)",
            param="name",
        )
    return name


def lineage_of(job: Job) -> dict[str, Any]:
    """Where the job's model came from, read from its model card (written when it succeeded)."""
    card = job.model_card or {}
    spec = job.spec
    datasets = card.get("datasets") or {}
    return {
        "job_id": job.id,
        "parent_foundation": card.get("foundation_model"),
        "datasets": {
            role: (datasets.get(role) or {}).get("sha256")
            for role in LINEAGE_ROLES
            if datasets.get(role)
        },
        "e0s_method": (card.get("e0s") or {}).get("method") or spec.get("e0s"),
        "strategy": spec["strategy"].get("name"),
    }


def promote_job(
    session: Session,
    storage: Storage,
    registry: FoundationRegistry,
    job_id: str,
    name: str,
    principal: Principal,
    description: str | None = None,
) -> FoundationModel:
    """Register job `job_id`'s delivered model as the foundation `name` (NotFoundError for a
    job the caller cannot see, InvalidStateTransitionError unless it succeeded, ConflictError
    for a name taken, InvalidSpecError for a bad name)."""
    require_promotion_name(name, principal)
    job = get_job(session, job_id)
    if job.state != JobState.SUCCEEDED:
        raise InvalidStateTransitionError(
            f"job {job_id} is {job.state.value}: only a succeeded job's model can be promoted"
        )
    if job.model_key is None or not storage.exists(job.model_key):
        raise ArtifactMissingError(f"job {job_id} has no delivered model to promote")
    if registry.exists(name):
        raise ConflictError(f"a foundation model named {name!r} exists already", param="name")
    lineage = lineage_of(job)
    if description:
        lineage["description"] = description
    with tempfile.TemporaryDirectory(prefix="mlft-promote-") as folder:
        # A copy of the job's file: the sandbox reads a file nothing else changes meanwhile.
        copy = Path(folder) / "promoted.model"
        storage.fetch(job.model_key, copy)
        model = registry.register(name, copy, source=PROMOTED, lineage=lineage)
    logger.info("job=%s promoted to foundation=%s sha256=%s", job_id, name, model.sha256)
    return model


def with_lineage(session: Session, foundation: dict[str, Any] | None) -> dict[str, Any] | None:
    """A model card's foundation entry ({name, sha256, head}), with the lineage of a promoted
    foundation added, so a chain of fine-tunes can be followed from any card."""
    if foundation is None:
        return None
    row = session.get(FoundationRecord, foundation["name"])
    if row is None or row.lineage is None or row.sha256 != foundation.get("sha256"):
        return foundation
    return {**foundation, "lineage": row.lineage}
