"""Refuse at submission the E0 reference mismatch that preflight would block on (issue 21).

With e0s='foundation' or 'estimated', a job whose data sit at another reference than the
foundation fails at preflight, after its wait in the queue. The part of preflight that finds it
needs only the foundation's energies of the training data: computed here when the data are small
(and kept in the prediction cache, where the worker's preflight and E0 estimation find them),
read from the cache when they are there already, skipped otherwise (the worker then checks).
"""

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from core.data.catalog import referenced_dataset
from core.data.datasets import read_configurations
from core.data.label_values import is_isolated_atom, labels_of
from core.errors import InvalidSpecError
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import FoundationModel, load_foundation
from core.science.e0s import model_e0s, predict_energies
from core.science.preflight_findings import BLOCKING_E0_METHODS, check_reference
from core.science.spec import JobSpec, ScratchStrategy
from core.service.db import session_scope
from core.service.models import Dataset
from core.workflows.context import JobContext

logger = logging.getLogger(__name__)

REFERENCE_CODE = "reference_mismatch"


def screen_reference(
    context: JobContext,
    spec: JobSpec,
    train: Dataset,
    max_atoms: int,
    loaded: dict[str, tuple[FoundationModel, torch.nn.Module]] | None = None,
) -> None:
    """Raise InvalidSpecError, with both fixes, when the job's E0s would leave the foundation
    more than E0_MISMATCH_MEV_PER_ATOM off the training data (preflight's reference step).
    `loaded` keeps foundations loaded between the jobs of one request (a sweep's)."""
    if (
        isinstance(spec.strategy, ScratchStrategy)
        or spec.e0s not in BLOCKING_E0_METHODS
        or REFERENCE_CODE in spec.preflight.acknowledge
    ):
        return
    foundation_name = spec.fine_tuned_foundation()  # not scratch: the spec names one
    known = context.registry.local_elements(foundation_name)
    if known is None or not set(train.summary["elements"]) <= set(known):
        return  # not fetched yet, or elements it lacks (refused elsewhere): the worker checks
    if (train.summary.get("n_atoms") or 0) > max_atoms:
        return
    with tempfile.TemporaryDirectory(prefix="mlft-admission-") as folder:
        with session_scope(context.sessions) as session:
            key = referenced_dataset(session, train.id, "train_dataset").storage_key
        path = context.storage.fetch(key, Path(folder) / "train.extxyz")
        molecules = [atoms for atoms in read_configurations(path) if not is_isolated_atom(atoms)]
        if not molecules:
            return
        registered = context.registry.resolve(foundation_name)
        loaded = {} if loaded is None else loaded
        # The head the job fine-tunes, as the worker's preflight sees it (same cache key).
        slot = f"{registered.sha256}|{spec.foundation_head}"
        if slot not in loaded:
            loaded[slot] = working_foundation(
                registered,
                load_foundation(registered, context.device),
                spec.foundation_head,
                Path(folder) / "foundation",
            )[:2]
        foundation, model = loaded[slot]

    def compute() -> np.ndarray:
        return predict_energies(model, molecules, device=context.device)

    # The same key as preflight's foundation_predictions: the worker reuses these energies.
    predicted = (
        context.cache.energies(foundation.sha256, molecules, compute)
        if context.cache is not None
        else compute()
    )
    energies = np.array([labels_of(atoms).energy for atoms in molecules], dtype=float)
    own = {chemical_symbols[z]: e0 for z, e0 in model_e0s(model).items()}
    findings = check_reference(molecules, energies, predicted, own, spec.e0s, {}).findings
    blocking = [finding for finding in findings if finding.severity == "blocking"]
    if blocking:
        logger.info("refused at submission: dataset=%s %s", train.id, blocking[0].message)
        message = blocking[0].message
        if "preflight.acknowledge" not in message:
            message += (
                f". To train anyway, add {REFERENCE_CODE!r} to preflight.acknowledge (POST "
                "/preflight shows every finding first)"
            )
        raise InvalidSpecError(message)
