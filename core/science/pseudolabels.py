"""Pseudolabels: the foundation's own energies, forces and stresses on replay structures.

mace-torch can pseudolabel inside each job (`--pseudolabel_replay`), but then every job of a sweep
labels the same structures again, one mace process at a time, and when its labelling fails it
logs a warning and trains the replay head on the placeholder labels. Here the labels are computed
once, in batches, shared through the prediction cache, and a failure fails the job.
"""

import logging
from collections.abc import Sequence

import ase
import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress

from core.errors import TrainingFailedError
from core.science.cache import PredictionCache
from core.science.inference import Prediction, predict

logger = logging.getLogger(__name__)


def pseudolabelled(
    configs: Sequence[ase.Atoms],
    model: torch.nn.Module,
    foundation_sha256: str,
    *,
    cache: PredictionCache | None = None,
    device: str = "cpu",
) -> list[ase.Atoms]:
    """Copies of the configurations with the foundation's predictions as their REF_ labels."""

    def compute() -> list[Prediction]:
        return predict(model, configs, device=device, forces=True, stress=True)

    predictions = cache.labels(foundation_sha256, configs, compute) if cache else compute()
    labelled = []
    for index, (atoms, prediction) in enumerate(zip(configs, predictions, strict=True)):
        forces = prediction.forces
        if forces is None or not np.isfinite(prediction.energy) or not np.isfinite(forces).all():
            raise TrainingFailedError(
                f"the foundation predicts non-finite energy or forces for replay structure "
                f"{index} ({atoms.get_chemical_formula()}); it cannot pseudolabel it"
            )
        copy = atoms.copy()
        copy.calc = None
        copy.info["REF_energy"] = prediction.energy
        copy.arrays["REF_forces"] = np.asarray(prediction.forces, dtype=np.float64)
        copy.info.pop("REF_stress", None)
        if prediction.stress is not None:
            # mace's stress output and its REF_stress input both follow ASE's sign convention.
            copy.info["REF_stress"] = full_3x3_to_voigt_6_stress(prediction.stress)
        labelled.append(copy)
    logger.info("pseudolabelled %d replay structures", len(labelled))
    return labelled
